// How the page's peer connections are configured: the STUN/TURN servers `joined` gave
// (ice_servers: TURN with per-participant credentials, docs/signaling.md), one transport
// for all media.
//
// A test/debug switch: `?ice=relay` in the meeting page's address sets
// iceTransportPolicy 'relay', so the browser uses TURN candidates only. That proves the
// TURN path (tests/control/static/test_turn.py) and lets an operator check it from a
// network where direct UDP works. It is never needed in normal use.

export function relayOnly(search) {
  return new URLSearchParams(search || '').get('ice') === 'relay';
}

export function rtcConfiguration(iceServers, search = globalThis.location ? globalThis.location.search : '') {
  const config = { iceServers, bundlePolicy: 'max-bundle' };
  if (relayOnly(search)) config.iceTransportPolicy = 'relay';
  return config;
}
