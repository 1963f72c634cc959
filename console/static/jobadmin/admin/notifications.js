// The monitor's notification list: every alert change the page learns of (fired, acknowledged,
// resolved), newest first, read or unread. It is kept in this browser's localStorage under one
// key per user ("jobadmin.notifications.<user id>"), the last 50 only, so it survives a reload
// but is not shared between browsers. An entry is keyed by alert id and status: the same change
// delivered twice (a replay after a reconnect) is one entry.
(function () {
  "use strict";

  var LIMIT = 50;

  function Notifications(userId) {
    this.key = "jobadmin.notifications." + (userId || "anonymous");
    this.items = this._load();
    this.listeners = [];
  }

  Notifications.prototype._load = function () {
    try {
      var items = JSON.parse(window.localStorage.getItem(this.key) || "[]");
      return Array.isArray(items) ? items.slice(0, LIMIT) : [];
    } catch (e) { return []; }
  };

  Notifications.prototype._save = function () {
    try { window.localStorage.setItem(this.key, JSON.stringify(this.items)); } catch (e) { /* full or blocked */ }
    this.listeners.forEach(function (fn) { fn(); });
  };

  Notifications.prototype.onChange = function (fn) { this.listeners.push(fn); };

  // Whether an alert id is already in the list (in any status): such an alert is not new.
  Notifications.prototype.knows = function (alertId) {
    return this.items.some(function (item) { return item.alert === alertId; });
  };

  // Add the alert's change; false if that very change is already listed.
  Notifications.prototype.add = function (alert) {
    var key = alert.id + ":" + alert.status;
    if (this.items.some(function (item) { return item.key === key; })) return false;
    this.items.unshift({
      key: key, alert: alert.id, status: alert.status, severity: alert.severity, rule: alert.rule,
      message: alert.message, at: alert.updated_at || alert.created_at, read: false
    });
    if (this.items.length > LIMIT) this.items.length = LIMIT;
    this._save();
    return true;
  };

  Notifications.prototype.unread = function () {
    return this.items.filter(function (item) { return !item.read; }).length;
  };

  Notifications.prototype.markRead = function (key) {
    this.items.forEach(function (item) { if (item.key === key) item.read = true; });
    this._save();
  };

  Notifications.prototype.markAllRead = function () {
    this.items.forEach(function (item) { item.read = true; });
    this._save();
  };

  Notifications.prototype.clear = function () {
    this.items = [];
    this._save();
  };

  Notifications.LIMIT = LIMIT;
  window.JobAdminNotifications = Notifications;
})();
