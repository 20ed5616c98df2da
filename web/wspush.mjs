// ES module entry of the wspush client: wspush.js is the whole client and sets globalThis.wspush.
import "./wspush.js";
export const connect = globalThis.wspush.connect;
