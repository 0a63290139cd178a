"""Python client SDK for Conclave meetings: signaling, aiortc peers, generated media, bots.

- `signaling.SignalingClient`: the WebSocket protocol of docs/signaling.md, no media.
- `peer.PublishPeer` / `peer.SubscribePeer`: the two aiortc peer connections.
- `media`: generated video (frame counter bar code) and audio (tone) tracks, files.
- `bot.Bot`: joins, publishes, decodes and counts what it receives; also a CLI
  (`python -m control.client.bot --help`).
"""
