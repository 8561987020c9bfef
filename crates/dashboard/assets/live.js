// The dashboard's only script (served from the dashboard itself, as its content security
// policy demands): live updates of a rollout's page over server-sent events, and controls
// that ask for confirmation and send commands without leaving the page.
(function () {
  'use strict';

  var live = document.getElementById('live');
  var status = document.getElementById('live-state');
  var say = function (text) { if (status) { status.textContent = text; } };

  if (live && live.dataset.events && window.EventSource) {
    var source = new EventSource(live.dataset.events);
    source.addEventListener('open', function () { say('live: following the rollout'); });
    source.addEventListener('update', function (e) {
      live.innerHTML = e.data;
      say('live: updated at ' + new Date().toLocaleTimeString());
    });
    source.addEventListener('gone', function (e) { say('live: ' + e.data); source.close(); });
    source.addEventListener('error', function (e) {
      say(e.data ? 'live: the store failed: ' + e.data : 'live: connection lost, reconnecting…');
    });
  }

  var flash = document.getElementById('flash');
  var show = function (text, error) {
    if (!flash) { return; }
    flash.hidden = false;
    flash.textContent = text;
    flash.className = error ? 'flash error' : 'flash';
  };

  var forms = document.querySelectorAll('form[data-confirm]');
  Array.prototype.forEach.call(forms, function (form) {
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var button = e.submitter;
      var data = new FormData(form);
      if (button && button.name) { data.set(button.name, button.value); }
      var reason = String(data.get('reason') || '').trim();
      if (!reason) { show('Give a reason: it is recorded with the command.', true); return; }
      var what = button ? button.textContent.trim() : 'Send';
      var subject = data.get('subject');
      if (!window.confirm(what + (subject ? ' gate ' + subject : ' this rollout') + '?\n\nReason: ' + reason)) { return; }
      var buttons = form.querySelectorAll('button');
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
      fetch(form.action, {
        method: 'POST',
        body: new URLSearchParams(data),
        headers: { 'Accept': 'application/json' },
        credentials: 'same-origin'
      }).then(function (response) {
        return response.json().catch(function () { return { message: response.statusText }; })
          .then(function (body) { show(body.message, !response.ok); });
      }).catch(function (err) {
        show('The command could not be sent: ' + err, true);
      }).then(function () {
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      });
    });
  });
})();
