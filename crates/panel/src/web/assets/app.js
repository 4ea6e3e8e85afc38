// portwall panel: small progressive enhancements; every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Ask before destructive actions: <form data-confirm="...">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }

  // Add-rule form: a preset sets protocol and port, so grey those out.
  for (const preset of document.querySelectorAll("select[data-preset]")) {
    const form = preset.form;
    const sync = () => {
      const custom = preset.value === "";
      for (const name of ["protocol", "port"]) {
        const el = form.elements.namedItem(name);
        if (el) {
          el.disabled = !custom;
          el.closest(".field")?.classList.toggle("muted", !custom);
        }
      }
    };
    preset.addEventListener("change", sync);
    sync();
  }
});
