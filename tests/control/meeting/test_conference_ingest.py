"""The conference's side of ingests (control.meeting.ingest): a participant that only
publishes (a WHIP session: no subscribe transport, never offered anything) and one whose
streams arrive on a plain transport (`Conference.publish_plain`), on fake workers."""

from __future__ import annotations

import pytest

from control.meeting.model import Participant
from sfu import api
from tests.control.meeting.test_conference import Peer, Setup, settle

pytestmark = pytest.mark.timeout(10)


async def test_a_publish_only_participant_gets_no_subscribe_side_and_no_offers():
    s = Setup()
    ann, ann_peer = await s.join("ann")
    encoder = Participant("enc", "Encoder", Peer())
    encoder.directions = ("publish",)
    await s.conference.join(s.meeting, encoder, [])
    assert encoder.subscribe_transport_id is None
    assert s.worker.transports[encoder.publish_transport_id][1] == "publish"
    await s.publish(ann, "microphone", "camera")  # nothing is made for it to receive
    await s.publish(encoder, "microphone", "camera")
    await settle()
    assert not encoder.consumers and encoder.peer.of_type("offer") == []
    assert {m["track"]["source"] for m in ann_peer.of_type("track_published")} == {"microphone", "camera"}
    assert len([c for c in ann.consumers.values() if c.track.participant_id == "enc"]) == 2  # they reach the others
    await s.conference.leave(s.meeting, encoder)
    assert encoder.publish_transport_id is None and len(s.worker.participant_transports()) == 2  # ann's


async def test_plain_streams_are_tracks_like_published_ones_and_go_with_their_transport():
    s = Setup()
    ann, ann_peer = await s.join("ann")
    rtp = Participant("rtp", "Stage camera", Peer())
    rtp.directions = ()
    await s.conference.join(s.meeting, rtp, [])
    assert rtp.publish_transport_id is None and rtp.subscribe_transport_id is None
    await s.conference.request(s.meeting, api.PlainTransportCreate(router_id="meeting1", transport_id="plain1"))
    rtp.publish_transport_id = "plain1"
    made = await s.conference.publish_plain(s.meeting, rtp, [
        api.PlainProducerCreate(transport_id="plain1", kind="video", codec_name="VP8", clock_rate=90000,
                                payload_type=96, ssrc=1),
        api.PlainProducerCreate(transport_id="plain1", kind="audio", codec_name="opus", clock_rate=48000,
                                payload_type=111, ssrc=2, channels=2),
    ])  # fmt: skip
    await settle()
    assert [t.source for t in made] == ["camera", "microphone"] and set(rtp.tracks) == {t.track_id for t in made}
    assert {m["track"]["participant_id"] for m in ann_peer.of_type("track_published")} == {"rtp"}
    assert len([c for c in ann.consumers.values() if c.track.participant_id == "rtp"]) == 2
    assert ann_peer.of_type("offer")
    assert ("published", "camera") in s.heard.events and ("published", "microphone") in s.heard.events
    await s.conference.leave(s.meeting, rtp)
    assert "plain1" not in s.worker.transports
    assert len(ann_peer.of_type("track_unpublished")) == 2 and ("left", "rtp") in s.heard.events


async def test_plain_streams_need_the_participants_transport():
    s = Setup()
    rtp = Participant("rtp", "Stage camera", Peer())
    rtp.directions = ()
    await s.conference.join(s.meeting, rtp, [])
    with pytest.raises(Exception, match="not in the meeting"):
        await s.conference.publish_plain(s.meeting, rtp, [])
