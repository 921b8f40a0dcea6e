// Single-key shortcuts for the review queue. The page works without them,
// because it is a plain form: the first decision has autofocus, arrow keys
// move between decisions and Tab reaches the note and the submit button.
"use strict";

(function () {
  const form = document.getElementById("queue-form");
  if (!form) {
    return;
  }
  const radios = Array.from(form.querySelectorAll('input[type="radio"]'));
  const note = form.querySelector("textarea");

  function isTyping(target) {
    return target === note || target.isContentEditable ||
      (target.tagName === "INPUT" && target.type === "text");
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.metaKey) {
      return;
    }
    if (event.target === note) {
      if (event.key === "Enter" && event.ctrlKey) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        note.blur();
      }
      return;
    }
    if (event.ctrlKey || isTyping(event.target)) {
      return;
    }
    const index = Number.parseInt(event.key, 10);
    if (index >= 1 && index <= radios.length) {
      event.preventDefault();
      radios[index - 1].checked = true;
      radios[index - 1].focus();
    } else if (event.key === "Enter" && event.target.tagName !== "A" &&
               event.target.tagName !== "BUTTON") {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "n") {
      event.preventDefault();
      window.location.assign(form.dataset.skipUrl);
    }
  });
})();
