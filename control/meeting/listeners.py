"""Upward news from the conference: what it tells whoever follows a meeting's media
(recording jobs), as a typed listener protocol with do-nothing defaults. The app adds the
listeners (control.app.build_services); the conference tells them all as one."""

from __future__ import annotations

from control.meeting.model import LiveMeeting, Participant, PublishedTrack


class ConferenceListener:
    """Upward news from the conference, for whoever follows a meeting's media (recording
    jobs: control.recording.service). Every method is called synchronously, most of them under the
    meeting's lock; a listener schedules its own I/O. The defaults do nothing."""

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        """Admitted with transports; `joined` was sent. Under the lock, before anything
        they send is handled (a listener may set `participant.media_held`). True if they
        need their subscribe connection now even with nothing but the server's tracks on it."""
        return False

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        """Gone from the meeting (`participant.exit_reason` says why)."""

    def track_published(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        """A new producer, already forwarded to the others."""

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        """A producer is closed (its consumers with it)."""

    def subscriber_connected(self, meeting: LiveMeeting, participant: Participant) -> None:
        """Their subscribe transport is up: what is played on a server track reaches them."""

    def router_created(self, meeting: LiveMeeting) -> None:
        """The meeting has a (new) router: first join, or back after its worker died."""

    def notice_played(self, meeting: LiveMeeting, frames: list[str]) -> None:
        """A notice clip (base64 Opus frames, 20 ms each) plays to the whole meeting."""

    def router_lost(self, meeting: LiveMeeting) -> None:
        """The meeting's worker died: its router, transports and producers are gone."""


class Listeners(ConferenceListener):
    """Every listener of the conference, told as one, in the order they were added."""

    def __init__(self) -> None:
        self.members: list[ConferenceListener] = []

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        return any([listener.participant_joined(meeting, participant) for listener in self.members])

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        for listener in self.members:
            listener.participant_left(meeting, participant)

    def track_published(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        for listener in self.members:
            listener.track_published(meeting, track)

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        for listener in self.members:
            listener.track_unpublished(meeting, track)

    def subscriber_connected(self, meeting: LiveMeeting, participant: Participant) -> None:
        for listener in self.members:
            listener.subscriber_connected(meeting, participant)

    def router_created(self, meeting: LiveMeeting) -> None:
        for listener in self.members:
            listener.router_created(meeting)

    def router_lost(self, meeting: LiveMeeting) -> None:
        for listener in self.members:
            listener.router_lost(meeting)

    def notice_played(self, meeting: LiveMeeting, frames: list[str]) -> None:
        for listener in self.members:
            listener.notice_played(meeting, frames)
