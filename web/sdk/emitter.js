// A small Node-style event emitter: the method names Twilio's SDK inherits from Node's
// EventEmitter, without pulling a polyfill into the bundle.

export class EventEmitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    const list = this._listeners.get(event) || [];
    list.push({ listener, once: false });
    this._listeners.set(event, list);
    this._listenerAdded(event);
    return this;
  }

  addListener(event, listener) {
    return this.on(event, listener);
  }

  once(event, listener) {
    this.on(event, listener);
    const list = this._listeners.get(event);
    list[list.length - 1].once = true;
    return this;
  }

  off(event, listener) {
    const list = this._listeners.get(event);
    if (!list) return this;
    const i = list.findIndex((entry) => entry.listener === listener);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this._listeners.delete(event);
    return this;
  }

  removeListener(event, listener) {
    return this.off(event, listener);
  }

  removeAllListeners(event) {
    if (event === undefined) this._listeners.clear();
    else this._listeners.delete(event);
    return this;
  }

  listenerCount(event) {
    const list = this._listeners.get(event);
    return list ? list.length : 0;
  }

  listeners(event) {
    return (this._listeners.get(event) || []).map((entry) => entry.listener);
  }

  // A listener that throws must not stop the SDK's own state changes or the other listeners,
  // so its error is reported asynchronously, as an uncaught error in the page.
  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || list.length === 0) return false;
    for (const entry of list.slice()) {
      if (entry.once) this.off(event, entry.listener);
      try {
        entry.listener.apply(this, args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    return true;
  }

  // Hook for subclasses (the Call starts its volume meter when someone listens).
  _listenerAdded(_event) {}
}
