// states.js — a connector's state as the console names it, from its object in
// GET /api/connectors/status: Not connected / Available / Connected / Pending
// permissions / Suspended / Disabled (the connector guide's words).
//   Disabled            the operator turned the connector off (`enabled: false`,
//                       e.g. NEXT_PUBLIC_ENABLE_OVH), or the user deactivated a
//                       webhook connection (Grafana `status: "disabled"`)
//   Pending permissions connected, but an installation waits for an owner to
//                       accept new permissions (GitHub `pending`)
//   Suspended           every installation is suspended (GitHub)
//   Available           a credential exists that is not the active connection
//                       (GitHub: an installation or OAuth token the mode does not use)
export function connectorState(id, s) {
  if (!s) return { label: 'Not connected', kind: 'neutral' };
  if (s.enabled === false) return { label: 'Disabled', kind: 'muted' };
  if (s.status === 'disabled') return { label: 'Disabled', kind: 'muted' };
  if (s.connected) {
    if (Number(s.pending) > 0) return { label: 'Pending permissions', kind: 'warn' };
    return { label: 'Connected', kind: 'ok' };
  }
  if (Number(s.suspended) > 0) return { label: 'Suspended', kind: 'warn' };
  if (Number(s.installations) > 0 || s.oauth_connected) return { label: 'Available', kind: 'info' };
  return { label: 'Not connected', kind: 'neutral' };
}
