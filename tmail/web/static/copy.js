// The copy buttons: shown only when this script runs (the text is always
// there to select by hand). No other JavaScript in tmail.
function selectText(element) {
  var range = document.createRange();
  range.selectNodeContents(element);
  var selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
  var target = document.getElementById(button.dataset.copy);
  if (!target) return;
  var label = button.textContent;
  button.hidden = false;
  function copied() {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 2000);
  }
  function byCommand() {   // older browsers, or a clipboard the page may not write
    selectText(target);
    try { if (document.execCommand("copy")) copied(); } catch (e) { /* selected: copy by hand */ }
  }
  button.addEventListener("click", function () {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(target.textContent.trim()).then(copied, byCommand);
    } else {
      byCommand();
    }
  });
});
