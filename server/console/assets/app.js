// Placeholder until the console pages land (issue 15, console-ui): says
// whether this browser has a console session.
'use strict';
document.addEventListener('DOMContentLoaded', async () => {
  const status = document.getElementById('status');
  const r = await fetch('/api/console/session', { credentials: 'same-origin' });
  status.textContent = r.ok ? 'Signed in.' : 'Not signed in.';
});
