//! VOX: a squelch line derived from the received audio level, with threshold, attack and
//! release times. Pure: time is counted in samples (48 kHz).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::audio::RATE;
use crate::line::{LineError, LineInput};

/// VOX settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoxConfig {
    /// Opening level in dBFS (RMS over 10 ms blocks; a full-scale sine is -3 dBFS), e.g. -35.
    pub threshold_dbfs: f32,
    /// How long the level must stay above the threshold before the VOX opens (e.g. 20 ms).
    pub attack: Duration,
    /// How long the level must stay below the threshold before the VOX closes (e.g. 500 ms).
    pub release: Duration,
}

impl Default for VoxConfig {
    /// -35 dBFS, 20 ms attack, 500 ms release.
    fn default() -> Self {
        VoxConfig {
            threshold_dbfs: -35.0,
            attack: Duration::from_millis(20),
            release: Duration::from_millis(500),
        }
    }
}

/// Samples per level block: 10 ms at 48 kHz.
pub const VOX_BLOCK: usize = (RATE / 100) as usize;

fn samples(d: Duration) -> u64 {
    (d.as_secs_f64() * f64::from(RATE)).round() as u64
}

/// The VOX detector: feed it received audio (48 kHz mono) with [`Vox::process`]; its state is
/// mirrored into the [`VoxLine`] it was created with.
#[derive(Debug)]
pub struct Vox {
    threshold: f32,
    attack: u64,
    release: u64,
    open: bool,
    run: u64,
    block_sum: f64,
    block_len: usize,
    shared: Arc<AtomicBool>,
}

/// The line input side of a [`Vox`]: reads `true` while the VOX is open.
#[derive(Debug, Clone)]
pub struct VoxLine {
    shared: Arc<AtomicBool>,
}

impl Vox {
    /// A closed VOX and its line.
    pub fn new(cfg: VoxConfig) -> (Vox, VoxLine) {
        let shared = Arc::new(AtomicBool::new(false));
        (
            Vox {
                threshold: 10f32.powf(cfg.threshold_dbfs / 20.0),
                attack: samples(cfg.attack),
                release: samples(cfg.release),
                open: false,
                run: 0,
                block_sum: 0.0,
                block_len: 0,
                shared: shared.clone(),
            },
            VoxLine { shared },
        )
    }

    /// Feeds received samples (48 kHz mono); returns whether the VOX is open afterwards.
    pub fn process(&mut self, samples: &[f32]) -> bool {
        for &s in samples {
            self.block_sum += f64::from(s) * f64::from(s);
            self.block_len += 1;
            if self.block_len == VOX_BLOCK {
                let rms = (self.block_sum / VOX_BLOCK as f64).sqrt() as f32;
                self.block_sum = 0.0;
                self.block_len = 0;
                self.block(rms >= self.threshold);
            }
        }
        self.open
    }

    fn block(&mut self, loud: bool) {
        if loud == self.open {
            self.run = 0;
            return;
        }
        self.run += VOX_BLOCK as u64;
        let needed = if self.open { self.release } else { self.attack };
        if self.run >= needed {
            self.open = loud;
            self.run = 0;
            self.shared.store(loud, Ordering::SeqCst);
        }
    }

    /// Whether the VOX is open.
    pub fn is_open(&self) -> bool {
        self.open
    }
}

impl LineInput for VoxLine {
    fn read(&mut self) -> Result<bool, LineError> {
        Ok(self.shared.load(Ordering::SeqCst))
    }
    fn describe(&self) -> String {
        "VOX".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize, amp: f32) -> Vec<f32> {
        (0..ms * 48)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 48000.0).sin())
            .collect()
    }

    #[test]
    fn opens_after_attack_and_closes_after_release() {
        let (mut v, mut line) = Vox::new(VoxConfig {
            threshold_dbfs: -30.0,
            attack: Duration::from_millis(20),
            release: Duration::from_millis(100),
        });
        assert!(!v.process(&tone(10, 0.5)));
        assert!(v.process(&tone(10, 0.5)));
        assert!(line.read().unwrap());
        // Quiet below threshold: stays open for the release time.
        assert!(v.process(&tone(90, 0.001)));
        assert!(!v.process(&tone(10, 0.001)));
        assert!(!line.read().unwrap());
    }

    #[test]
    fn short_bursts_do_not_open() {
        let (mut v, _) = Vox::new(VoxConfig {
            threshold_dbfs: -30.0,
            attack: Duration::from_millis(30),
            release: Duration::from_millis(100),
        });
        for _ in 0..10 {
            assert!(!v.process(&tone(20, 0.5)));
            assert!(!v.process(&tone(10, 0.0)));
        }
    }
}
