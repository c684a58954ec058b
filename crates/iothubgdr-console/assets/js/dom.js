// Building the page. Every string goes in as a text node or an attribute value: this
// module never parses HTML, so a device id, tag or error message from a hub shows as the
// characters it is and can never become markup or script.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "value" && "value" in element) {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** `h("p", {class: "note"}, "text", otherNode)`: an HTML element. */
export function h(tag, attributes, ...children) {
  return build(document.createElement(tag), attributes, children);
}

/** The same for SVG elements. */
export function svg(tag, attributes, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

/** Replaces every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/** Tells screen-reader users about a change that is not where their focus is. */
export function announce(message) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  // A fresh text a moment later is announced even when it repeats the last one.
  setTimeout(() => { announcer.textContent = message; }, 50);
}

/** A labelled form field: `<label>` + control, with an optional hint. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 10)}`;
  control.id = id;
  const parts = [h("label", { for: id }, label)];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(control, h("small", { id: hintId, class: "hint" }, hint));
  } else {
    parts.push(control);
  }
  return h("div", { class: "field" }, parts);
}

/** Asks before a destructive action, in the page's modal dialog. Resolves to true or false. */
export function confirmAction(title, text, confirmLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = confirmLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "ok");
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });
}

/** A page heading that takes the focus, so screen readers announce the new page. */
export function pageHeading(text) {
  return h("h1", { tabindex: "-1", id: "page-title" }, text);
}

/** An error shown in the page, announced at once. */
export function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}
