"""Typed messages between control and an SFU worker.

Each is a `common.messages.Message` (a frozen dataclass with an ``ENTITY_VERB`` name); a
request gets exactly one response (its type in RESPONSES, or an error), a notification
carries the id of the entity it is about. `common.channel` frames them.

Control imports this module and nothing else from `sfu`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from common.messages import Empty, Message

# ----------------------------------------------------------------- shared records


@dataclass(frozen=True)
class ProducerInfo:
    """A stream a participant publishes (one m-line of their publish connection)."""

    producer_id: str
    mid: str
    kind: str  # "audio" | "video"
    source: str  # "microphone" | "camera" | "screen" | ...
    codec: str


@dataclass(frozen=True)
class ConsumerInfo:
    """One m-line of a subscriber's connection: a producer forwarded to them."""

    consumer_id: str
    producer_id: str
    mid: str
    kind: str
    active: bool
    source: str = ""  # the producer's: "microphone", "camera", ..., "announcement"


# ------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class WorkerGetStats(Message):
    NAME: ClassVar[str] = "WORKER_GET_STATS"


@dataclass(frozen=True)
class WorkerStats(Message):
    """Snapshot of the worker's plain-int counters; see sfu/worker.py for the keys."""

    NAME: ClassVar[str] = "WORKER_STATS"
    counters: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> packets
    gauges: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RouterCreate(Message):
    """A router is one meeting's forwarding domain inside a worker."""

    NAME: ClassVar[str] = "ROUTER_CREATE"
    router_id: str


@dataclass(frozen=True)
class RouterClose(Message):
    """Closes the router and everything in it: transports, producers, consumers."""

    NAME: ClassVar[str] = "ROUTER_CLOSE"
    router_id: str


@dataclass(frozen=True)
class TransportCreate(Message):
    """One ICE/DTLS path of a participant. direction: "publish" or "subscribe"."""

    NAME: ClassVar[str] = "TRANSPORT_CREATE"
    router_id: str
    transport_id: str
    direction: str


@dataclass(frozen=True)
class TransportClose(Message):
    """Any transport (WebRTC, plain, direct), with its producers and consumers, and the
    consumers of those producers wherever they are."""

    NAME: ClassVar[str] = "TRANSPORT_CLOSE"
    transport_id: str


@dataclass(frozen=True)
class PublishOffer(Message):
    """The client's offer for its publish transport; sources maps mid -> source label."""

    NAME: ClassVar[str] = "PUBLISH_OFFER"
    transport_id: str
    sdp: str
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishAnswer(Message):
    NAME: ClassVar[str] = "PUBLISH_ANSWER"
    sdp: str
    producers: list[ProducerInfo] = field(default_factory=list)  # new ones
    closed_producer_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProducerClose(Message):
    """Any producer (an announcer too), with its consumers."""

    NAME: ClassVar[str] = "PRODUCER_CLOSE"
    producer_id: str


@dataclass(frozen=True)
class ProducerPause(Message):
    """Server-side mute: while paused nothing of the producer is forwarded."""

    NAME: ClassVar[str] = "PRODUCER_PAUSE"
    producer_id: str
    paused: bool


@dataclass(frozen=True)
class ConsumerCreate(Message):
    """Answered with Empty (WebRTC: active once the subscriber accepts the offer), or with
    PlainConsumerInfo when transport_id is a plain transport."""

    NAME: ClassVar[str] = "CONSUMER_CREATE"
    transport_id: str  # the subscriber's subscribe transport, or a plain transport
    consumer_id: str
    producer_id: str


@dataclass(frozen=True)
class ConsumerClose(Message):
    NAME: ClassVar[str] = "CONSUMER_CLOSE"
    consumer_id: str


@dataclass(frozen=True)
class ConsumerSetViewport(Message):
    """The subscriber's tile of this consumer's track: a simulcast consumer forwards the
    smallest layer at least `height` tall (the top one when none is), nothing while not
    `visible`; a consumer of a single video stream pauses while not `visible` (and resumes
    from a keyframe). On a WebRTC subscriber the tile is an input of its allocation
    (sfu.engine.subscription): it caps the layer and hides the track, within the
    bandwidth and last-N; `pinned` puts the track before others (a 0 x 0 visible tile:
    size not known yet, no cap)."""

    NAME: ClassVar[str] = "CONSUMER_SET_VIEWPORT"
    consumer_id: str
    width: int
    height: int
    visible: bool
    pinned: bool = False


@dataclass(frozen=True)
class RouterSetLastN(Message):
    """The meeting's last-N (issue 11, item 7): each subscriber of this router receives
    the video of at most `last_n` participants (screen sharers, pinned tiles, then the
    most recent speakers first); the rest is paused without renegotiation. 0: no limit."""

    NAME: ClassVar[str] = "ROUTER_SET_LAST_N"
    router_id: str
    last_n: int


@dataclass(frozen=True)
class SubscribeOfferCreate(Message):
    """Ask for a fresh offer describing all consumers of a subscribe transport."""

    NAME: ClassVar[str] = "SUBSCRIBE_OFFER_CREATE"
    transport_id: str


@dataclass(frozen=True)
class SubscribeOffer(Message):
    NAME: ClassVar[str] = "SUBSCRIBE_OFFER"
    sdp: str
    consumers: list[ConsumerInfo] = field(default_factory=list)


@dataclass(frozen=True)
class SubscribeAnswerSet(Message):
    NAME: ClassVar[str] = "SUBSCRIBE_ANSWER_SET"
    transport_id: str
    sdp: str


@dataclass(frozen=True)
class PlaybackOffer(Message):
    """A player's offer (WHEP) for a fresh subscribe transport: answered with one sendonly
    slot per kind it receives (its first audio and first video m= section), never
    renegotiated. Consumers made on the transport afterwards take their kind's slot and
    start at once; CONSUMER_SET_PRODUCER changes a slot's source. See sfu.transport.playback."""

    NAME: ClassVar[str] = "PLAYBACK_OFFER"
    transport_id: str
    sdp: str


@dataclass(frozen=True)
class PlaybackAnswer(Message):
    NAME: ClassVar[str] = "PLAYBACK_ANSWER"
    sdp: str
    kinds: list[str] = field(default_factory=list)  # the slots: "audio", "video"


@dataclass(frozen=True)
class ConsumerSetProducer(Message):
    """A player's consumer forwards another producer of the same kind and codec from now
    on, as one continuous stream (same SSRC, sequence and timestamps going on; video from
    the new source's next keyframe, which is asked for): switching without renegotiation.
    Single-stream producers only (a simulcast one is refused: "invalid")."""

    NAME: ClassVar[str] = "CONSUMER_SET_PRODUCER"
    consumer_id: str
    producer_id: str


# ------------------------------------------------------------ plain RTP transports
#
# A plain transport is one UDP port that speaks RTP/RTCP (rtcp-mux) without ICE or DTLS,
# optionally SRTP keyed by SDES (RFC 4568): ffmpeg/GStreamer ingest, feeding a recorder,
# benchmarks. See docs/plain-rtp.md.


@dataclass(frozen=True)
class PlainTransportCreate(Message):
    """Bind a UDP port for plain RTP. port 0 picks a free one. srtp: SRTP with SDES keys."""

    NAME: ClassVar[str] = "PLAIN_TRANSPORT_CREATE"
    router_id: str
    transport_id: str
    listen_ip: str = "127.0.0.1"
    port: int = 0
    srtp: bool = False


@dataclass(frozen=True)
class PlainTransportInfo(Message):
    """Where to send, and (srtp) the key we encrypt what WE send with, base64 of key||salt."""

    NAME: ClassVar[str] = "PLAIN_TRANSPORT_INFO"
    transport_id: str
    ip: str
    port: int
    srtp_crypto_suite: str | None = None
    srtp_key_base64: str | None = None


@dataclass(frozen=True)
class PlainTransportConnect(Message):
    """Where we send to, and (srtp) the key of what we receive.

    Without remote_ip/remote_port the transport keeps learning the remote address from
    the first valid RTP/RTCP it receives (comedia); with them, only that address is heard.
    May be sent again, e.g. to give the key first and the address later.
    """

    NAME: ClassVar[str] = "PLAIN_TRANSPORT_CONNECT"
    transport_id: str
    remote_ip: str | None = None
    remote_port: int | None = None
    remote_srtp_key_base64: str | None = None


@dataclass(frozen=True)
class PlainProducerCreate(Message):
    """A stream arriving on a plain transport, recognised by its SSRC and payload type."""

    NAME: ClassVar[str] = "PLAIN_PRODUCER_CREATE"
    transport_id: str
    kind: str  # "audio" | "video"
    codec_name: str  # one of media.video_codecs / media.audio_codecs, e.g. "VP8", "opus"
    clock_rate: int
    payload_type: int
    ssrc: int
    channels: int | None = None
    source: str = ""  # default: "microphone" for audio, "camera" for video


@dataclass(frozen=True)
class PlainProducerCreated(Message):
    NAME: ClassVar[str] = "PLAIN_PRODUCER_CREATED"
    producer: ProducerInfo


@dataclass(frozen=True)
class PlainConsumerInfo(Message):
    """The answer to CONSUMER_CREATE on a plain transport: what the receiver will get.

    Active at once (there is no answer step); video starts at the next keyframe.
    """

    NAME: ClassVar[str] = "PLAIN_CONSUMER_INFO"
    consumer_id: str
    producer_id: str
    kind: str
    codec_name: str
    clock_rate: int
    payload_type: int
    ssrc: int
    channels: int | None = None


# ------------------------------------------------------------ direct transports
#
# A direct transport is a transport of a router with no socket (mediasoup's
# DirectTransport): its producers are fed by the worker itself. A direct producer is an
# announcer: a server-side audio producer (Opus, 48 kHz) that plays notice clips sent with
# NOTICE_PLAY. Control makes one per meeting and consumes it like any track
# (CONSUMER_CREATE on each participant's subscribe transport, or on a plain transport).
# See docs/notice.md.


@dataclass(frozen=True)
class DirectTransportCreate(Message):
    """A transport without a socket in the router, for producers the worker feeds."""

    NAME: ClassVar[str] = "DIRECT_TRANSPORT_CREATE"
    router_id: str
    transport_id: str


@dataclass(frozen=True)
class DirectProducerCreate(Message):
    """An announcer on a direct transport: kind "audio" (it plays Opus clips). The worker
    picks its id; source is what consumers see (default "announcement")."""

    NAME: ClassVar[str] = "DIRECT_PRODUCER_CREATE"
    transport_id: str
    kind: str
    source: str = ""


@dataclass(frozen=True)
class DirectProducerCreated(Message):
    NAME: ClassVar[str] = "DIRECT_PRODUCER_CREATED"
    producer: ProducerInfo


@dataclass(frozen=True)
class NoticePlay(Message):
    """Play a clip through a direct producer (an announcer), paced at 20 ms per frame.

    frames: base64 Opus packets of 20 ms each (common.notices.notice_frames). consumer_ids:
    consumers of the producer to play to; empty: every consumer it has. A consumer already
    in a play leaves it for this one; one that cannot receive yet (no answer, no DTLS)
    gets the clip from its start once it can, within 10 s. Answered once scheduled.
    """

    NAME: ClassVar[str] = "NOTICE_PLAY"
    producer_id: str
    frames: list[str]
    consumer_ids: list[str] = field(default_factory=list)


# ------------------------------------------------------------ pipe transports
#
# A pipe joins one meeting's router on this worker to its router on another worker of
# the same machine (plain RTP on 127.0.0.1): a meeting larger than one worker keeps its
# publishers on its home worker and seats subscribers elsewhere, each published producer
# piped once to each other worker it is received on. See sfu/transport/pipe.py.


@dataclass(frozen=True)
class PipeTransportCreate(Message):
    """Bind a pipe transport (a UDP port on listen_ip) in the router."""

    NAME: ClassVar[str] = "PIPE_TRANSPORT_CREATE"
    router_id: str
    transport_id: str
    listen_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class PipeTransportInfo(Message):
    NAME: ClassVar[str] = "PIPE_TRANSPORT_INFO"
    transport_id: str
    ip: str
    port: int


@dataclass(frozen=True)
class PipeTransportConnect(Message):
    """The other worker's pipe transport: where we send, and the only address heard."""

    NAME: ClassVar[str] = "PIPE_TRANSPORT_CONNECT"
    transport_id: str
    ip: str
    port: int


@dataclass(frozen=True)
class PipedProducerInfo:
    """A producer as it leaves through a pipe: the original's id, stream and codec, with
    the payload type and SSRC the pipe's consumer sends it under."""

    producer_id: str
    kind: str
    source: str
    codec_name: str
    clock_rate: int
    payload_type: int
    ssrc: int
    stream_id: str
    cname: str = ""
    channels: int | None = None
    fmtp: str = ""
    extmap: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PipeConsume(Message):
    """A consumer of `producer_id` on a pipe transport (active at once; video from the
    next keyframe), answered with what the other side's PIPE_PRODUCER_CREATE needs."""

    NAME: ClassVar[str] = "PIPE_CONSUME"
    transport_id: str
    consumer_id: str
    producer_id: str


@dataclass(frozen=True)
class PipeConsumed(Message):
    NAME: ClassVar[str] = "PIPE_CONSUMED"
    producer: PipedProducerInfo


@dataclass(frozen=True)
class PipeProducerCreate(Message):
    """The copy of another worker's producer arriving on this pipe transport, under the
    same producer id (consumed here like the original)."""

    NAME: ClassVar[str] = "PIPE_PRODUCER_CREATE"
    transport_id: str
    producer: PipedProducerInfo


RESPONSES: dict[type[Message], type[Message]] = {
    WorkerGetStats: WorkerStats,
    RouterCreate: Empty,
    RouterClose: Empty,
    TransportCreate: Empty,
    TransportClose: Empty,
    PublishOffer: PublishAnswer,
    ProducerClose: Empty,
    ProducerPause: Empty,
    ConsumerCreate: Empty,  # PlainConsumerInfo when the transport is a plain one
    ConsumerClose: Empty,
    ConsumerSetViewport: Empty,
    RouterSetLastN: Empty,
    SubscribeOfferCreate: SubscribeOffer,
    SubscribeAnswerSet: Empty,
    PlaybackOffer: PlaybackAnswer,
    ConsumerSetProducer: Empty,
    PlainTransportCreate: PlainTransportInfo,
    PlainTransportConnect: Empty,
    PlainProducerCreate: PlainProducerCreated,
    DirectTransportCreate: Empty,
    DirectProducerCreate: DirectProducerCreated,
    NoticePlay: Empty,
    PipeTransportCreate: PipeTransportInfo,
    PipeTransportConnect: Empty,
    PipeConsume: PipeConsumed,
    PipeProducerCreate: Empty,
}


# ------------------------------------------------------------------- notifications


@dataclass(frozen=True)
class WorkerReady(Message):
    """Sent once when the worker's socket is bound; entity id is the worker index."""

    NAME: ClassVar[str] = "WORKER_READY"
    port: int
    announced_ips: list[str] = field(default_factory=list)
    tcp_port: int = 0  # its ICE-TCP listening port; 0: sfu.ice_tcp is off


@dataclass(frozen=True)
class TransportStateChanged(Message):
    """state: "connected" (ICE+DTLS up), "failed", "closed", "disconnected" (ICE consent
    expired: nothing is sent until the peer's checks select an address again). Entity id:
    transport id."""

    NAME: ClassVar[str] = "TRANSPORT_STATE_CHANGED"
    state: str


@dataclass(frozen=True)
class ProducerClosed(Message):
    """The worker closed a producer by itself (its transport died). Entity: producer id."""

    NAME: ClassVar[str] = "PRODUCER_CLOSED"
    reason: str


@dataclass(frozen=True)
class ActiveSpeaker(Message):
    """The meeting's dominant speaker changed (sfu.engine.speaker.DominantSpeaker, fed the
    microphones' RFC 6464 audio levels): `producer_id` is the microphone now dominant.
    Entity id: the router id. Sent only on a change; silence is not one."""

    NAME: ClassVar[str] = "ACTIVE_SPEAKER"
    producer_id: str


@dataclass(frozen=True)
class SubscriberAllocation(Message):
    """What a subscriber receives of its video tracks changed (the per-subscriber
    allocator: bandwidth estimate, tiles, last-N). Entity id: the subscribe transport.

    `estimate_bps`: the transport's bandwidth estimate now (0: none yet: the subscriber
    has sent neither transport-cc feedback nor REMB, and is not constrained). `tracks`: only the consumers
    whose outcome changed, each {"consumer_id": str, "spatial": int (the spatial layer
    forwarded, -1 when paused), "temporal": int, "layers": int (spatial layers the track
    has; 1 for a single stream), "height": int (of the forwarded layer, 0 unknown),
    "paused": str ("" or why: "bandwidth", "hidden", "last_n")}."""

    NAME: ClassVar[str] = "SUBSCRIBER_ALLOCATION"
    estimate_bps: int
    tracks: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ProducerLayersWanted(Message):
    """Dynacast (issue 11, item 5): which simulcast layers of this producer some consumer
    takes (the recorder counts, for the highest it wants). The publisher should keep
    sending `active_rids` and pause its other encodings. Entity id: the producer. Sent
    on a change only: a layer becomes unwanted after a hold, wanted again at once."""

    NAME: ClassVar[str] = "PRODUCER_LAYERS_WANTED"
    active_rids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TransportQuality(Message):
    """What one report window (`sfu.clockwork.QUALITY_REPORT_S`) said about a WebRTC
    transport's path (sfu.engine.quality.LinkQuality). Entity id: the transport. Sent only
    for a window with reports in it: at most one per transport per window.

    `direction`: "publish" (our reception of the publisher's streams) or "subscribe" (the
    subscriber's receiver reports about what we send it). `loss_ratio`: the mean fraction
    lost over the window's report blocks (0..1), `loss_max` the worst block's; `jitter_s`:
    the worst stream's interarrival jitter (seconds); `rtt_s`: the mean round trip from
    the reports' LSR/DLSR (seconds; -1: none measured); `estimate_bps`: the subscribe
    transport's bandwidth estimate (0: none); `blocks`: report blocks summed;
    `video_delivered`: the share of the bitrate its tiles need that the allocation sends it
    (`sfu.engine.subscription.Subscription.delivered_ratio`, 0..1; -1: no video asked for,
    or a publish transport)."""

    NAME: ClassVar[str] = "TRANSPORT_QUALITY"
    direction: str
    loss_ratio: float
    loss_max: float
    jitter_s: float
    rtt_s: float
    estimate_bps: int = 0
    blocks: int = 0
    video_delivered: float = -1.0


def response_type(request: Message) -> type[Message]:
    return RESPONSES[type(request)]
