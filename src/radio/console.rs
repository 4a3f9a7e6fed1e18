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
//! There is no PTT output, so no [`Action::Key`] / [`Action::Unkey`].

use super::port::{Action, PortEvent, FRAME_SAMPLES, SAMPLE_RATE};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    Idle,
    Requesting,
    Sending,
    /// Denied or revoked: dropping the microphone until the button is released.
    Refused,
}

/// One console's state. See the module docs.
#[derive(Debug)]
pub struct ConsolePort {
    state: State,
    pressed: bool,
    mic: VecDeque<f32>,
    prebuffer: usize,
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
        }
    }

    /// Whether the button is down (debounced).
    pub fn pressed(&self) -> bool {
        self.pressed
    }

    /// Whether the console holds the floor and sends.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, State::Sending)
    }

    /// The PTT button changed.
    pub fn button(&mut self, _now: Instant, down: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if down == self.pressed {
            return out;
        }
        self.pressed = down;
        if down {
            self.mic.clear();
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
                State::Idle | State::Refused => {}
            }
            self.mic.clear();
        }
        out
    }

    /// Microphone audio (48 kHz mono).
    pub fn captured_audio(&mut self, _now: Instant, samples: &[f32]) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Requesting => {
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
            State::Idle | State::Refused => {}
        }
        out
    }

    /// Floor control granted the request.
    pub fn floor_granted(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Requesting => {
                self.state = State::Sending;
                self.captured_audio(now, &[])
            }
            // Released before the grant arrived: give it back.
            State::Idle => vec![Action::ReleaseFloor],
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

    /// Channel voice (48 kHz mono): played unless this console is talking.
    pub fn channel_audio(&mut self, _now: Instant, samples: &[f32]) -> Vec<Action> {
        if matches!(self.state, State::Sending) {
            return Vec::new();
        }
        vec![Action::Play(samples.to_vec())]
    }

    /// Shutdown: releases the floor if held or requested.
    pub fn shutdown(&mut self, _now: Instant) -> Vec<Action> {
        let was = std::mem::replace(&mut self.state, State::Idle);
        self.pressed = false;
        self.mic.clear();
        match was {
            State::Sending | State::Requesting => vec![Action::ReleaseFloor],
            State::Idle | State::Refused => Vec::new(),
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
}
