//! The console port state machine (a PTT button plus a local microphone and speaker). Pure:
//! every input carries `now`, and every call returns the [`Action`]s for the driver.
//!
//! - button down: request the floor ([`Action::RequestFloor`]), keeping the microphone audio
//!   meanwhile (up to `prebuffer`) so the first syllable is not lost;
//! - granted: the microphone is sent in 20 ms frames ([`Action::Send`]); denied or revoked:
//!   the microphone is dropped until the button is released and pressed again;
//! - button up: the last partial frame is sent (padded) and the floor released;
//! - channel voice is played on the speaker ([`Action::Play`]) unless this console is talking.
//!
//! Instant recall (issue 14 point 5, [`ConsolePort::with_instant_recall`]): a press released
//! within the double press window is a tap, not a talk; a press within the window after a
//! tap asks for the channel's last recording ([`Action::Replay`]); the driver hands its Opus
//! packets back ([`ConsolePort::replay_loaded`]) and they are played on this speaker only,
//! paced in real time from [`ConsolePort::tick`] ([`Action::PlayRecorded`]). Live channel
//! voice or a new press stops the replay. So that a tap never keys the channel, a press asks
//! for the floor only once it has been held for the window (the microphone is kept from the
//! press on and sent at the grant, so nothing said is lost; the talk starts that much later).
//!
//! There is no PTT output, so no [`Action::Key`] / [`Action::Unkey`].

use super::port::{Action, PortEvent, FRAME_SAMPLES, SAMPLE_RATE};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    Idle,
    /// Button down with instant recall on: a talk once held until `until` (then the floor is
    /// requested), a tap if released before. The microphone is kept meanwhile.
    Held {
        until: Instant,
    },
    Requesting,
    Sending,
    /// Denied or revoked: dropping the microphone until the button is released.
    Refused,
    /// The second press of a double press: nothing more until it is released.
    RecallPress,
}

/// One console's state. See the module docs.
#[derive(Debug)]
pub struct ConsolePort {
    state: State,
    pressed: bool,
    mic: VecDeque<f32>,
    prebuffer: usize,
    /// The double press window, when instant recall is on.
    double_press: Option<Duration>,
    /// When the last tap ended (button released).
    tap: Option<Instant>,
    /// Recorded Opus packets still to play, with their samples (48 kHz).
    replay: VecDeque<(Vec<u8>, u32)>,
    /// When the next recorded packet is due.
    replay_due: Option<Instant>,
}

impl ConsolePort {
    /// An idle console keeping at most `prebuffer` of microphone audio while a request is
    /// pending.
    pub fn new(prebuffer: Duration) -> Self {
        ConsolePort {
            state: State::Idle,
            pressed: false,
            mic: VecDeque::new(),
            prebuffer: ((prebuffer.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize)
                .max(FRAME_SAMPLES),
            double_press: None,
            tap: None,
            replay: VecDeque::new(),
            replay_due: None,
        }
    }

    /// Turns instant recall on with a double press window of `window` (see the module docs;
    /// `[[console]] double_press_ms`). The microphone prebuffer grows by `window`, since a
    /// press is held that long before the floor is requested.
    pub fn with_instant_recall(mut self, window: Duration) -> Self {
        self.double_press = Some(window);
        self.prebuffer += (window.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
        self
    }

    /// Whether the button is down (debounced).
    pub fn pressed(&self) -> bool {
        self.pressed
    }

    /// Whether the console holds the floor and sends.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, State::Sending)
    }

    /// Whether a recorded transmission is being replayed.
    pub fn is_replaying(&self) -> bool {
        self.replay_due.is_some()
    }

    fn stop_replay(&mut self) {
        self.replay.clear();
        self.replay_due = None;
    }

    /// The PTT button changed.
    pub fn button(&mut self, now: Instant, down: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if down == self.pressed {
            return out;
        }
        self.pressed = down;
        if down {
            self.stop_replay();
            self.mic.clear();
            if let Some(window) = self.double_press {
                if self
                    .tap
                    .take()
                    .is_some_and(|t| now.saturating_duration_since(t) <= window)
                {
                    self.state = State::RecallPress;
                    out.push(Action::Replay);
                } else {
                    self.state = State::Held {
                        until: now + window,
                    };
                }
                return out;
            }
            self.state = State::Requesting;
            out.push(Action::RequestFloor);
        } else {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Sending => {
                    if !self.mic.is_empty() {
                        let mut f: Vec<f32> = self.mic.drain(..).collect();
                        f.resize(FRAME_SAMPLES, 0.0);
                        out.push(Action::Send(f));
                    }
                    out.push(Action::ReleaseFloor);
                }
                State::Requesting => out.push(Action::ReleaseFloor),
                State::Held { .. } => self.tap = Some(now),
                State::Idle | State::Refused | State::RecallPress => {}
            }
            self.mic.clear();
        }
        out
    }

    /// Timers: a held press becomes a floor request; the replay's next packets are due.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let State::Held { until } = self.state {
            if now >= until {
                self.state = State::Requesting;
                out.push(Action::RequestFloor);
            }
        }
        while let Some(due) = self.replay_due.filter(|d| *d <= now) {
            match self.replay.pop_front() {
                Some((packet, samples)) => {
                    let len = Duration::from_nanos(
                        u64::from(samples) * 1_000_000_000 / u64::from(SAMPLE_RATE),
                    );
                    // A driver that fell behind catches up, but never plays a backlog
                    // of more than 100 ms at once (the rest follows in real time).
                    let mut next = due + len;
                    if let Some(floor) = now.checked_sub(Duration::from_millis(100)) {
                        next = next.max(floor);
                    }
                    self.replay_due = Some(next);
                    out.push(Action::PlayRecorded(packet));
                }
                None => self.replay_due = None,
            }
        }
        out
    }

    /// When [`ConsolePort::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let held = match self.state {
            State::Held { until } => Some(until),
            _ => None,
        };
        match (held, self.replay_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The recording asked for by [`Action::Replay`]: its Opus packets with their samples
    /// (48 kHz each). Played from now on, unless this console talks meanwhile.
    pub fn replay_loaded(&mut self, now: Instant, packets: Vec<(Vec<u8>, u32)>) -> Vec<Action> {
        if matches!(self.state, State::Requesting | State::Sending) || packets.is_empty() {
            return Vec::new();
        }
        self.replay = packets.into();
        self.replay_due = Some(now);
        self.tick(now)
    }

    /// Microphone audio (48 kHz mono).
    pub fn captured_audio(&mut self, _now: Instant, samples: &[f32]) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Requesting | State::Held { .. } => {
                self.mic.extend(samples.iter().copied());
                let excess = self.mic.len().saturating_sub(self.prebuffer);
                self.mic.drain(..excess);
            }
            State::Sending => {
                self.mic.extend(samples.iter().copied());
                while self.mic.len() >= FRAME_SAMPLES {
                    out.push(Action::Send(self.mic.drain(..FRAME_SAMPLES).collect()));
                }
            }
            State::Idle | State::Refused | State::RecallPress => {}
        }
        out
    }

    /// Floor control granted the request.
    pub fn floor_granted(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Requesting => {
                self.state = State::Sending;
                self.stop_replay();
                self.captured_audio(now, &[])
            }
            // Released (or never asked) before the grant arrived: give it back.
            State::Idle | State::Held { .. } | State::RecallPress => vec![Action::ReleaseFloor],
            State::Sending | State::Refused => Vec::new(),
        }
    }

    /// Floor control denied the request.
    pub fn floor_denied(&mut self, _now: Instant, reason: &str) -> Vec<Action> {
        if matches!(self.state, State::Requesting) {
            self.state = State::Refused;
            self.mic.clear();
            return vec![Action::Log(PortEvent::FloorDenied {
                reason: reason.into(),
            })];
        }
        Vec::new()
    }

    /// Floor control revoked the floor (pre-emption, time-out timer).
    pub fn floor_revoked(&mut self, _now: Instant) -> Vec<Action> {
        if matches!(self.state, State::Sending | State::Requesting) {
            self.state = State::Refused;
            self.mic.clear();
            return vec![Action::Log(PortEvent::FloorRevoked)];
        }
        Vec::new()
    }

    /// Channel voice (48 kHz mono): played unless this console is talking; live voice stops
    /// a replay.
    pub fn channel_audio(&mut self, _now: Instant, samples: &[f32]) -> Vec<Action> {
        if matches!(self.state, State::Sending) {
            return Vec::new();
        }
        self.stop_replay();
        vec![Action::Play(samples.to_vec())]
    }

    /// Shutdown: releases the floor if held or requested.
    pub fn shutdown(&mut self, _now: Instant) -> Vec<Action> {
        let was = std::mem::replace(&mut self.state, State::Idle);
        self.pressed = false;
        self.mic.clear();
        self.stop_replay();
        match was {
            State::Sending | State::Requesting => vec![Action::ReleaseFloor],
            State::Idle | State::Refused | State::Held { .. } | State::RecallPress => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(a: &[Action]) -> usize {
        a.iter().filter(|a| matches!(a, Action::Send(_))).count()
    }

    #[test]
    fn press_request_grant_send_release() {
        let t = Instant::now();
        let mut c = ConsolePort::new(Duration::from_millis(500));
        assert_eq!(c.button(t, true), vec![Action::RequestFloor]);
        // Microphone audio while pending is kept, and sent at the grant.
        assert!(c.captured_audio(t, &[0.1; 1500]).is_empty());
        assert_eq!(sends(&c.floor_granted(t)), 1);
        assert_eq!(sends(&c.captured_audio(t, &[0.1; 1000])), 1);
        // The console does not hear the channel while talking.
        assert!(c.channel_audio(t, &[0.2; 960]).is_empty());
        let up = c.button(t, false);
        assert_eq!(sends(&up), 1, "the partial frame is flushed");
        assert_eq!(up.last(), Some(&Action::ReleaseFloor));
        assert_eq!(c.channel_audio(t, &[0.2; 960]).len(), 1);
    }

    #[test]
    fn denied_or_revoked_drops_the_mic_until_released() {
        let t = Instant::now();
        let mut c = ConsolePort::new(Duration::from_millis(500));
        c.button(t, true);
        assert!(matches!(
            c.floor_denied(t, "busy")[..],
            [Action::Log(PortEvent::FloorDenied { .. })]
        ));
        assert!(c.captured_audio(t, &[0.1; 2000]).is_empty());
        assert!(c.button(t, false).is_empty());
        c.button(t, true);
        c.floor_granted(t);
        assert_eq!(c.floor_revoked(t).len(), 1);
        assert!(c.captured_audio(t, &[0.1; 2000]).is_empty());
        assert!(
            c.button(t, false).is_empty(),
            "nothing to release after a revoke"
        );
    }

    #[test]
    fn grant_after_release_is_given_back() {
        let t = Instant::now();
        let mut c = ConsolePort::new(Duration::from_millis(500));
        c.button(t, true);
        assert_eq!(c.button(t, false), vec![Action::ReleaseFloor]);
        assert_eq!(c.floor_granted(t), vec![Action::ReleaseFloor]);
    }

    fn recall() -> ConsolePort {
        ConsolePort::new(Duration::from_millis(500)).with_instant_recall(Duration::from_millis(400))
    }

    fn ms(t: Instant, n: u64) -> Instant {
        t + Duration::from_millis(n)
    }

    #[test]
    fn with_instant_recall_a_tap_never_asks_for_the_floor_and_a_double_press_replays() {
        let t = Instant::now();
        let mut c = recall();
        assert!(c.button(t, true).is_empty(), "a press is not a request yet");
        assert!(c.tick(ms(t, 150)).is_empty());
        assert!(c.button(ms(t, 150), false).is_empty(), "a tap");
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.button(ms(t, 400), true), vec![Action::Replay]);
        assert!(
            c.tick(ms(t, 2_000)).is_empty(),
            "the recall press never talks"
        );
        assert!(c.button(ms(t, 2_100), false).is_empty());
        // The recording: 3 packets of 20 ms, played one per 20 ms from now on.
        let packets = vec![(vec![1u8], 960), (vec![2u8], 960), (vec![3u8], 960)];
        let now = ms(t, 2_200);
        assert_eq!(
            c.replay_loaded(now, packets),
            vec![Action::PlayRecorded(vec![1])]
        );
        assert!(c.is_replaying());
        assert_eq!(c.next_deadline(), Some(ms(t, 2_220)));
        assert!(c.tick(ms(t, 2_210)).is_empty(), "not yet: real time");
        assert_eq!(c.tick(ms(t, 2_220)), vec![Action::PlayRecorded(vec![2])]);
        assert_eq!(c.tick(ms(t, 2_241)), vec![Action::PlayRecorded(vec![3])]);
        assert!(c.tick(ms(t, 2_300)).is_empty());
        assert!(!c.is_replaying());
    }

    #[test]
    fn a_slow_second_press_or_a_long_first_one_is_a_talk() {
        let t = Instant::now();
        let mut c = recall();
        c.button(t, true);
        c.button(ms(t, 100), false);
        // 500 ms after the tap: too late for a double press; held 400 ms: a talk.
        assert!(c.button(ms(t, 600), true).is_empty());
        assert!(c.captured_audio(ms(t, 700), &[0.1; 4_800]).is_empty());
        assert_eq!(c.next_deadline(), Some(ms(t, 1_000)));
        assert_eq!(c.tick(ms(t, 1_000)), vec![Action::RequestFloor]);
        // The microphone kept from the press on is sent at the grant (100 ms = 5 frames).
        assert_eq!(sends(&c.floor_granted(ms(t, 1_010))), 5);
        assert_eq!(c.button(ms(t, 2_000), false), vec![Action::ReleaseFloor]);
        // A press held past the window, then released: a talk, not a tap.
        c.button(ms(t, 3_000), true);
        assert_eq!(c.tick(ms(t, 3_400)), vec![Action::RequestFloor]);
        c.button(ms(t, 3_500), false);
        assert!(
            c.button(ms(t, 3_600), true).is_empty(),
            "not a double press"
        );
    }

    #[test]
    fn live_voice_or_a_press_stops_a_replay() {
        let t = Instant::now();
        let mut c = recall();
        let packets: Vec<(Vec<u8>, u32)> = (0..50).map(|i| (vec![i], 960)).collect();
        c.replay_loaded(t, packets.clone());
        assert!(c.is_replaying());
        assert_eq!(c.channel_audio(ms(t, 30), &[0.2; 960]).len(), 1);
        assert!(!c.is_replaying(), "live talk stops the replay");
        assert!(c.tick(ms(t, 100)).is_empty());
        c.replay_loaded(ms(t, 200), packets);
        c.button(ms(t, 220), true);
        assert!(!c.is_replaying(), "a press stops the replay");
        // A stalled driver does not get the whole backlog at once.
        let mut c = recall();
        c.replay_loaded(t, (0..50).map(|i| (vec![i], 960)).collect());
        let burst = c.tick(ms(t, 1_000)).len();
        assert!(burst <= 7, "{burst} packets at once after a 1 s stall");
    }

    #[test]
    fn without_instant_recall_a_press_asks_at_once_and_replays_are_not_loaded_while_talking() {
        let t = Instant::now();
        let mut c = ConsolePort::new(Duration::from_millis(500));
        assert_eq!(c.button(t, true), vec![Action::RequestFloor]);
        c.button(ms(t, 50), false);
        assert_eq!(c.button(ms(t, 100), true), vec![Action::RequestFloor]);
        c.floor_granted(ms(t, 110));
        assert!(c.replay_loaded(ms(t, 120), vec![(vec![1], 960)]).is_empty());
        assert!(!c.is_replaying());
    }
}
