"""Python client SDK for Conclave meetings: signaling, aiortc peers, generated media, bots.

- `signaling.SignalingClient`: the WebSocket protocol of docs/signaling.md, no media.
- `peer.PublishPeer` / `peer.SubscribePeer`: the two aiortc peer connections.
- `media`: generated video (frame counter bar code) and audio (tone) tracks, files.
- `recording`: `RecordingState` (a `recording_state` notice) and its watcher.
- `bot.Bot`: joins, publishes, decodes and counts what it receives, follows recording
  notices; its CLI is `botcli` (`python -m client.bot --help`).
"""
