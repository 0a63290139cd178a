"""RTP in, files out: reorder (jitter), rebuild frames (depacketize), place them on the
recording's timeline (timeline), remux into self-contained segments (segments), mix the
meeting's audio (mixer), and the spoken notice decoded for the mix (notice; the clips
themselves are common.notices').

Each module is a small state machine fed with values, with an injected clock where time
matters; the recorder process owns the sockets and timers.
"""
