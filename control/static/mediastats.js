// WebRTC statistics of a meeting session, shaped for the page's test hook and for people
// debugging a call: what we receive per participant and source, what we send per
// source, and what arrives on the server's announcement track. No DOM, no state.

export const ANNOUNCEMENT_SOURCE = 'announcement';

// Each inbound-rtp report of `pc` with the offer metadata of its m-line (or null).
async function inboundReports(pc, subTracks) {
  const midByTrackId = new Map();
  for (const t of pc.getTransceivers()) midByTrackId.set(t.receiver.track.id, t.mid);
  const out = [];
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    out.push([s, subTracks.get(s.mid ?? midByTrackId.get(s.trackIdentifier)) || null]);
  });
  return out;
}

// {participant_id: {source: {kind, framesDecoded, packetsReceived, bytesReceived, trackId,
// frameWidth, frameHeight, freezeCount, totalFreezesDuration}}}; the
// announcement track belongs to nobody and is left out (see announcementStats).
export async function subscribeStats(pc, subTracks) {
  const result = {};
  if (!pc) return result;
  for (const [s, meta] of await inboundReports(pc, subTracks)) {
    if (!meta || meta.active === false || meta.source === ANNOUNCEMENT_SOURCE) continue;
    const perParticipant = (result[meta.participant_id] ??= {});
    perParticipant[meta.source] = {
      kind: s.kind || meta.kind,
      framesDecoded: s.framesDecoded ?? 0,
      packetsReceived: s.packetsReceived ?? 0,
      bytesReceived: s.bytesReceived ?? 0,
      trackId: meta.track_id,
      // Video: what the simulcast layer forwarded looks like, and whether it froze.
      frameWidth: s.frameWidth ?? 0,
      frameHeight: s.frameHeight ?? 0,
      freezeCount: s.freezeCount ?? 0,
      totalFreezesDuration: s.totalFreezesDuration ?? 0,
    };
  }
  return result;
}

// What arrived on the announcement track (the server's spoken recording notice), or
// null when the server offered none.
export async function announcementStats(pc, subTracks) {
  if (!pc) return null;
  let result = null;
  for (const [s, meta] of await inboundReports(pc, subTracks)) {
    if (!meta || meta.source !== ANNOUNCEMENT_SOURCE) continue;
    result = {
      mid: meta.mid,
      trackId: meta.track_id,
      packetsReceived: s.packetsReceived ?? 0,
      bytesReceived: s.bytesReceived ?? 0,
      totalAudioEnergy: s.totalAudioEnergy ?? 0,
      totalSamplesReceived: s.totalSamplesReceived ?? 0,
    };
  }
  if (result) return result;
  // Offered but nothing received yet: there is no inbound-rtp report before the first packet.
  const offered = [...subTracks.values()].find((m) => m.source === ANNOUNCEMENT_SOURCE);
  return offered ? { mid: offered.mid, trackId: offered.track_id, packetsReceived: 0, bytesReceived: 0,
    totalAudioEnergy: 0, totalSamplesReceived: 0 } : null;
}

// Bytes received over every inbound RTP stream, whatever it carries (0 with no connection).
export async function inboundBytes(pc) {
  if (!pc) return 0;
  let total = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp') total += s.bytesReceived ?? 0;
  });
  return total;
}

// {source: {kind, packetsSent, bytesSent, framesEncoded}} summed over encodings.
export async function publishStats(pc, pubSources) {
  const result = {};
  if (!pc) return result;
  const sourceByMid = new Map();
  for (const [t, source] of pubSources) if (t.mid !== null) sourceByMid.set(t.mid, source);
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'outbound-rtp') return;
    const source = sourceByMid.get(s.mid);
    if (!source) return;
    const acc = (result[source] ??= { kind: s.kind, packetsSent: 0, bytesSent: 0, framesEncoded: 0 });
    acc.packetsSent += s.packetsSent ?? 0;
    acc.bytesSent += s.bytesSent ?? 0;
    acc.framesEncoded += s.framesEncoded ?? 0;
  });
  return result;
}

// The camera's encodings as the browser sends them: [{rid, frameWidth, frameHeight,
// framesEncoded, bytesSent, retransmittedBytesSent, nackCount, pliCount,
// qualityLimitationReason, availableOutgoingBitrate}] (one entry without simulcast).
export async function publishEncodingStats(pc) {
  const out = [];
  if (!pc) return out;
  const reports = await pc.getStats();
  let available = null;   // the send-side estimate of the connection
  reports.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate !== undefined) {
      available = s.availableOutgoingBitrate;
    }
  });
  reports.forEach((s) => {
    if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
    out.push({
      rid: s.rid ?? null, frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0,
      framesEncoded: s.framesEncoded ?? 0, bytesSent: s.bytesSent ?? 0,
      retransmittedBytesSent: s.retransmittedBytesSent ?? 0, nackCount: s.nackCount ?? 0,
      pliCount: s.pliCount ?? 0, qualityLimitationReason: s.qualityLimitationReason ?? null,
      availableOutgoingBitrate: available,
    });
  });
  return out;
}
