// indus studio: the answer span of the "Write questions" page, chosen with the mouse.
// Offsets are counted in Unicode code points, as Python counts them, not in the UTF-16 units of the DOM.
(function () {
  "use strict";
  var passage = document.getElementById("passage");
  if (!passage) { return; }
  var text = passage.textContent;
  var startField = document.getElementById("answer_start");
  var textField = document.getElementById("answer_text");
  var view = document.getElementById("answer-view");
  var question = document.getElementById("question");
  var save = document.getElementById("save-question");

  function codePoints(s) { return Array.from(s).length; }

  function update() {
    save.disabled = !(textField.value && question.value.trim());
  }

  function render(start16, end16) {
    // show the chosen span in place (text nodes only: the passage is never parsed as HTML)
    passage.textContent = "";
    passage.appendChild(document.createTextNode(text.slice(0, start16)));
    var mark = document.createElement("mark");
    mark.className = "answer-span";
    mark.textContent = text.slice(start16, end16);
    passage.appendChild(mark);
    passage.appendChild(document.createTextNode(text.slice(end16)));
  }

  function offsetIn(node, offset) {
    // the UTF-16 offset of (node, offset) within the passage's whole text
    var walker = document.createTreeWalker(passage, NodeFilter.SHOW_TEXT);
    var total = 0;
    while (walker.nextNode()) {
      if (walker.currentNode === node) { return total + offset; }
      total += walker.currentNode.length;
    }
    return null;
  }

  passage.addEventListener("mouseup", function () {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) { return; }
    var range = sel.getRangeAt(0);
    if (!passage.contains(range.startContainer) || !passage.contains(range.endContainer)) { return; }
    var a = offsetIn(range.startContainer, range.startOffset);
    var b = offsetIn(range.endContainer, range.endOffset);
    if (a === null || b === null) { return; }
    if (a > b) { var t = a; a = b; b = t; }
    while (a < b && /\s/.test(text[a])) { a++; }        // a span never starts or ends on a space
    while (b > a && /\s/.test(text[b - 1])) { b--; }
    if (a === b) { return; }
    startField.value = String(codePoints(text.slice(0, a)));
    textField.value = text.slice(a, b);
    view.textContent = "\u201c" + textField.value + "\u201d";
    view.className = "chosen";
    sel.removeAllRanges();
    render(a, b);
    update();
  });
  question.addEventListener("input", update);
  update();
})();
