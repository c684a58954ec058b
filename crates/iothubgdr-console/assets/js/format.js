// Numbers, times and rates as people read them.

const numbers = new Intl.NumberFormat("en");

export function count(n) {
  return numbers.format(n);
}

export function time(rfc3339) {
  if (!rfc3339) return "";
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return rfc3339;
  return date.toLocaleString("en-GB", {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
}

export function rate(perSecond) {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return "";
  return `${numbers.format(Math.round(perSecond))} devices/s`;
}

/** The uuid of an identity such as `assets/<uuid>`. */
export function uuidOf(identity) {
  const slash = (identity || "").lastIndexOf("/");
  return slash < 0 ? identity : identity.slice(slash + 1);
}

/** Any attribute value as text. */
export function attributeText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}
