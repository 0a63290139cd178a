"""A worker supervisor without processes, for unit tests of control's conference.

`FakeWorkers` offers what control.meeting.conference uses of
control.processes.workers.WorkerSupervisor (placing a meeting, requests to a worker
generation, down and notification listeners) and answers every request the way an SFU
worker would, keeping just enough of the media objects to check what control asked for:
routers, transports, producers, consumers, paused producers, each router's last-N. It
checks the references the way a worker does (an unknown transport or producer is a
ChannelError), so a request control sends in the wrong order fails the test.

`refuse_last_n` makes a worker answer ROUTER_SET_LAST_N as one without the allocator
does (an error); `FakeWorkers.notify` injects a worker's notification (ACTIVE_SPEAKER,
SUBSCRIBER_ALLOCATION, PRODUCER_LAYERS_WANTED, ...) as the supervisor would deliver it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from common.channel import ChannelError
from common.messages import Empty, Message
from sfu import api


class FakeWorker:
    """One worker slot, answering requests in-process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 1
        self.up = True
        self.routers: set[str] = set()  # what WorkerHandle.routers is: meetings placed here
        self.client = self  # WorkerHandle.client.request(...)
        self.requests: list[Message] = []
        self.router_ids: set[str] = set()
        self.transports: dict[str, tuple[str, str]] = {}  # id -> (router id, direction)
        self.producers: dict[str, tuple[str, str]] = {}  # id -> (transport id, kind)
        self.consumers: dict[str, tuple[str, str]] = {}  # id -> (transport id, producer id)
        self.viewports: dict[str, tuple[int, int, bool]] = {}  # consumer id -> its tile
        self.paused: set[str] = set()
        self.last_n: dict[str, int] = {}  # router id -> its last-N (ROUTER_SET_LAST_N)
        self.refuse_last_n = False  # answer ROUTER_SET_LAST_N as a worker without the allocator
        self._mids: dict[str, str] = {}  # producer id -> its mid on the publish transport
        self._ids = itertools.count(1)

    def names(self) -> list[str]:
        return [message.NAME for message in self.requests]

    def _transport(self, transport_id: str) -> tuple[str, str]:
        if transport_id not in self.transports:
            raise ChannelError("not_found", f"no transport {transport_id}")
        return self.transports[transport_id]

    async def request(self, message: Message) -> Message:
        if not self.up:
            raise ChannelError("worker_down", f"worker {self.index} is not running")
        self.requests.append(message)
        handler = getattr(self, "_on_" + message.NAME.lower(), None)
        if handler is None:
            return Empty()
        return handler(message)

    def _on_router_create(self, message: api.RouterCreate) -> Message:
        self.router_ids.add(message.router_id)
        return Empty()

    def _on_router_set_last_n(self, message: api.RouterSetLastN) -> Message:
        if self.refuse_last_n:
            raise ChannelError("unknown_request", "ROUTER_SET_LAST_N")
        if message.router_id not in self.router_ids:
            raise ChannelError("not_found", f"no router {message.router_id}")
        self.last_n[message.router_id] = message.last_n
        return Empty()

    def _on_router_close(self, message: api.RouterClose) -> Message:
        self.router_ids.discard(message.router_id)
        for transport_id, (router_id, _) in list(self.transports.items()):
            if router_id == message.router_id:
                self._close_transport(transport_id)
        return Empty()

    def _on_transport_create(self, message: api.TransportCreate) -> Message:
        if message.router_id not in self.router_ids:
            raise ChannelError("not_found", f"no router {message.router_id}")
        self.transports[message.transport_id] = (message.router_id, message.direction)
        return Empty()

    def _on_direct_transport_create(self, message: api.DirectTransportCreate) -> Message:
        if message.router_id not in self.router_ids:
            raise ChannelError("not_found", f"no router {message.router_id}")
        self.transports[message.transport_id] = (message.router_id, "direct")
        return Empty()

    def _on_direct_producer_create(self, message: api.DirectProducerCreate) -> Message:
        self._transport(message.transport_id)
        producer_id = f"d{next(self._ids)}" if not self.index else f"w{self.index}d{next(self._ids)}"
        self.producers[producer_id] = (message.transport_id, message.kind)
        self._mids[producer_id] = "0"
        return api.DirectProducerCreated(producer=api.ProducerInfo(producer_id, "0", message.kind, message.source, "opus"))

    def _on_notice_play(self, message: api.NoticePlay) -> Message:
        if message.producer_id not in self.producers:
            raise ChannelError("not_found", f"no producer {message.producer_id}")
        for consumer_id in message.consumer_ids:  # as the worker checks them
            if self.consumers.get(consumer_id, ("", ""))[1] != message.producer_id:
                raise ChannelError("invalid", f"consumer {consumer_id} does not consume {message.producer_id}")
        return Empty()

    def _on_plain_transport_create(self, message: api.PlainTransportCreate) -> Message:
        if message.router_id not in self.router_ids:
            raise ChannelError("not_found", f"no router {message.router_id}")
        self.transports[message.transport_id] = (message.router_id, "plain")
        return api.PlainTransportInfo(message.transport_id, message.listen_ip, 40000 + len(self.transports))

    def _on_plain_producer_create(self, message: api.PlainProducerCreate) -> Message:
        self._transport(message.transport_id)
        producer_id = f"pl{next(self._ids)}"
        self.producers[producer_id] = (message.transport_id, message.kind)
        self._mids[producer_id] = producer_id
        source = message.source or ("microphone" if message.kind == "audio" else "camera")
        return api.PlainProducerCreated(api.ProducerInfo(producer_id, producer_id, message.kind, source,
                                                         message.codec_name))  # fmt: skip

    def _on_pipe_transport_create(self, message: api.PipeTransportCreate) -> Message:
        if message.router_id not in self.router_ids:
            raise ChannelError("not_found", f"no router {message.router_id}")
        self.transports[message.transport_id] = (message.router_id, "pipe")
        return api.PipeTransportInfo(message.transport_id, "127.0.0.1", 41000 + len(self.transports))

    def _on_pipe_transport_connect(self, message: api.PipeTransportConnect) -> Message:
        self._transport(message.transport_id)
        return Empty()

    def _on_pipe_consume(self, message: api.PipeConsume) -> Message:
        self._transport(message.transport_id)
        if message.producer_id not in self.producers:
            raise ChannelError("not_found", f"no producer {message.producer_id}")
        self.consumers[message.consumer_id] = (message.transport_id, message.producer_id)
        kind = self.producers[message.producer_id][1]
        audio = kind == "audio"
        return api.PipeConsumed(api.PipedProducerInfo(
            message.producer_id, kind, "microphone" if audio else "camera", "opus" if audio else "VP8",
            48000 if audio else 90000, 100, 2000 + len(self.consumers), stream_id="s",
        ))  # fmt: skip

    def _on_pipe_producer_create(self, message: api.PipeProducerCreate) -> Message:
        self._transport(message.transport_id)
        if message.producer.producer_id in self.producers:
            raise ChannelError("invalid", f"producer {message.producer.producer_id} exists")
        self.producers[message.producer.producer_id] = (message.transport_id, message.producer.kind)
        self._mids[message.producer.producer_id] = message.producer.producer_id
        return Empty()

    def _on_producer_close(self, message: api.ProducerClose) -> Message:
        if self.producers.pop(message.producer_id, None) is not None:
            for consumer_id, (_, producer_id) in list(self.consumers.items()):
                if producer_id == message.producer_id:
                    del self.consumers[consumer_id]
        return Empty()

    def participant_transports(self) -> dict[str, tuple[str, str]]:
        """The transports of participants (publish, subscribe): not the router's own."""
        return {t: (r, d) for t, (r, d) in self.transports.items() if d not in ("direct", "pipe")}

    def _on_transport_close(self, message: api.TransportClose) -> Message:
        self._close_transport(message.transport_id)
        return Empty()

    def _close_transport(self, transport_id: str) -> None:
        self.transports.pop(transport_id, None)
        gone = {p for p, (t, _) in self.producers.items() if t == transport_id}
        for producer_id in gone:
            del self.producers[producer_id]
        for consumer_id, (t, p) in list(self.consumers.items()):
            if t == transport_id or p in gone:
                del self.consumers[consumer_id]

    def _on_publish_offer(self, message: api.PublishOffer) -> Message:
        self._transport(message.transport_id)
        created = []
        for mid, source in message.sources.items():
            if self.producers_by_mid(message.transport_id).get(mid) is not None:
                continue
            producer_id = f"p{next(self._ids)}"
            kind = "audio" if source in ("microphone", "screen-audio") else "video"
            self.producers[producer_id] = (message.transport_id, kind)
            self._mids[producer_id] = mid
            created.append(api.ProducerInfo(producer_id, mid, kind, source, "opus" if kind == "audio" else "VP8"))
        return api.PublishAnswer(sdp="answer", producers=created)

    def producers_by_mid(self, transport_id: str) -> dict[str, str]:
        return {self._mids[p]: p for p, (t, _) in self.producers.items() if t == transport_id}

    def _on_producer_pause(self, message: api.ProducerPause) -> Message:
        if message.producer_id not in self.producers:
            raise ChannelError("not_found", f"no producer {message.producer_id}")
        if message.paused:
            self.paused.add(message.producer_id)
        else:
            self.paused.discard(message.producer_id)
        return Empty()

    def _on_consumer_create(self, message: api.ConsumerCreate) -> Message:
        self._transport(message.transport_id)
        if message.producer_id not in self.producers:
            raise ChannelError("not_found", f"no producer {message.producer_id}")
        self.consumers[message.consumer_id] = (message.transport_id, message.producer_id)
        if self.transports[message.transport_id][1] == "plain":  # answered with what it sends
            kind = self.producers[message.producer_id][1]
            return api.PlainConsumerInfo(message.consumer_id, message.producer_id, kind, "opus" if kind == "audio" else "VP8",
                                         48000 if kind == "audio" else 90000, 100, 1000 + len(self.consumers))  # fmt: skip
        return Empty()

    def _on_playback_offer(self, message: api.PlaybackOffer) -> Message:
        self._transport(message.transport_id)
        return api.PlaybackAnswer(sdp="answer", kinds=["audio", "video"])

    def _on_consumer_set_producer(self, message: api.ConsumerSetProducer) -> Message:
        if message.consumer_id not in self.consumers:
            raise ChannelError("not_found", f"no consumer {message.consumer_id}")
        if message.producer_id not in self.producers:
            raise ChannelError("not_found", f"no producer {message.producer_id}")
        self.consumers[message.consumer_id] = (self.consumers[message.consumer_id][0], message.producer_id)
        return Empty()

    def _on_consumer_set_viewport(self, message: api.ConsumerSetViewport) -> Message:
        if message.consumer_id not in self.consumers:
            raise ChannelError("not_found", f"no consumer {message.consumer_id}")
        self.viewports[message.consumer_id] = (message.width, message.height, message.visible)
        return Empty()

    def _on_consumer_close(self, message: api.ConsumerClose) -> Message:
        self.consumers.pop(message.consumer_id, None)
        return Empty()

    def _on_subscribe_offer_create(self, message: api.SubscribeOfferCreate) -> Message:
        self._transport(message.transport_id)
        infos = [
            api.ConsumerInfo(consumer_id, producer_id, str(n), self.producers[producer_id][1], True)
            for n, (consumer_id, (t, producer_id)) in enumerate(self.consumers.items())
            if t == message.transport_id and producer_id in self.producers
        ]
        return api.SubscribeOffer(sdp="offer", consumers=infos)


class FakeWorkers:
    """What the conference uses of WorkerSupervisor, over FakeWorker slots."""

    def __init__(self, count: int = 1) -> None:
        self.workers = [FakeWorker(index) for index in range(count)]
        self._down: list[Callable[[int, int], None]] = []
        self._notifications: list[Callable[[int, int, str, Message], None]] = []

    def add_down_listener(self, listener: Callable[[int, int], None]) -> None:
        self._down.append(listener)

    def add_notification_listener(self, listener: Callable[[int, int, str, Message], None]) -> None:
        self._notifications.append(listener)

    async def wait_for_live_worker(self, timeout: float) -> FakeWorker | None:
        live = [w for w in self.workers if w.up]
        return min(live, key=lambda w: (len(w.routers), w.index), default=None)

    def handle_for(self, index: int, generation: int) -> FakeWorker:
        worker = self.workers[index]
        if not worker.up or worker.generation != generation:
            raise ChannelError("worker_down", f"worker {index} is not running")
        return worker

    async def request(self, index: int, generation: int, message: Message) -> Message:
        return await self.handle_for(index, generation).request(message)

    def kill(self, index: int) -> None:
        """The worker process died: its media is gone, the listeners hear it."""
        worker = self.workers[index]
        worker.up = False
        for listener in self._down:
            listener(index, worker.generation)

    def notify(self, index: int, entity_id: str, message: Message) -> None:
        worker = self.workers[index]
        for listener in self._notifications:
            listener(index, worker.generation, entity_id, message)
