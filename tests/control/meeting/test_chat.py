"""control.meeting.chat: what the store keeps of a meeting's chat is bounded
(`retention.chat_messages_per_meeting`): a participant who talks on and on makes the
oldest messages go, in the store itself, not only in what joiners are shown."""

from __future__ import annotations


async def test_the_store_keeps_the_latest_messages_of_a_meeting(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(retention={"chat_messages_per_meeting": 4},
                                           signaling={"chat_history": 100})  # fmt: skip
    meeting_id = (await server.create_meeting())["meeting_id"]
    socket = await signaling_socket(server.ws_url(meeting_id))
    await socket.join("ann")
    for n in range(10):
        await socket.send({"type": "chat", "text": f"message {n}"})
    for _ in range(10):
        await socket.recv_type("chat")
    stored = await server.services.store.list_chat(meeting_id)
    assert [m.text for m in stored] == [f"message {n}" for n in range(6, 10)]
    assert [m.seq for m in stored] == [7, 8, 9, 10]  # numbering goes on
    late = await signaling_socket(server.ws_url(meeting_id))
    assert [m["text"] for m in (await late.join("ben"))["chat"]] == [f"message {n}" for n in range(6, 10)]
