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

// The local ICE candidate each peer connection sends through (test hook: which path
// media took): {candidateType: host|srflx|relay, relayProtocol: udp|tcp|tls|null}, or null.
export async function selectedLocalCandidates(pcs) {
  const result = [];
  for (const pc of pcs) {
    const report = pc ? await pc.getStats() : new Map();
    let pairId = null;
    report.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId ? report.get(pairId) : null;
    const local = pair ? report.get(pair.localCandidateId) : null;
    result.push(local ? { candidateType: local.candidateType, relayProtocol: local.relayProtocol || null } : null);
  }
  return result;
}
