//! Channel and sample-rate conversion (rubato FFT resampler), outside the audio callback.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::AudioError;

/// Averages interleaved `channels`-channel frames into mono, appending to `out`.
pub fn downmix(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() * scale),
    );
}

/// Copies mono samples to every one of `channels` channels, appending interleaved frames.
pub fn upmix(mono: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(mono);
        return;
    }
    for &s in mono {
        out.extend(std::iter::repeat_n(s, channels));
    }
}

/// A streaming mono sample-rate converter; a pass-through when both rates are equal.
/// Its delay is [`RateConverter::delay`] output samples.
pub struct RateConverter {
    from: u32,
    to: u32,
    fft: Option<Fft<f32>>,
    pending: Vec<f32>,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for RateConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateConverter")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl RateConverter {
    /// A converter from `from` Hz to `to` Hz, working in 10 ms chunks.
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        let err = |detail: String| AudioError::Resampler { from, to, detail };
        if from == 0 || to == 0 {
            return Err(err("rates must be positive".into()));
        }
        let fft = if from == to {
            None
        } else {
            let chunk = (from as usize / 100).max(16);
            Some(
                Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
                    .map_err(|e| err(e.to_string()))?,
            )
        };
        let (pending, scratch) = match &fft {
            Some(f) => (
                Vec::with_capacity(f.input_frames_max() * 4),
                vec![0.0; f.output_frames_max()],
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(RateConverter {
            from,
            to,
            fft,
            pending,
            scratch,
        })
    }

    /// Converts `input` and appends what is ready to `out` (input is buffered until a whole
    /// chunk is there).
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(fft) = self.fft.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        let mut start = 0;
        loop {
            let need = fft.input_frames_next();
            if self.pending.len() - start < need {
                break;
            }
            let (from, to) = (self.from, self.to);
            let err = |detail: String| AudioError::Resampler { from, to, detail };
            let inp = InterleavedSlice::new(&self.pending[start..start + need], 1, need)
                .map_err(|e| err(e.to_string()))?;
            let out_len = self.scratch.len();
            let mut outp = InterleavedSlice::new_mut(&mut self.scratch[..], 1, out_len)
                .map_err(|e| err(e.to_string()))?;
            let (used, made) = fft
                .process_into_buffer(&inp, &mut outp, None)
                .map_err(|e| err(e.to_string()))?;
            out.extend_from_slice(&self.scratch[..made]);
            start += used;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// The converter's delay in output samples.
    pub fn delay(&self) -> usize {
        self.fft.as_ref().map_or(0, |f| f.output_delay())
    }

    /// Input rate (Hz).
    pub fn from_rate(&self) -> u32 {
        self.from
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Estimates the frequency of a signal by counting zero crossings.
    pub(crate) fn zero_crossing_hz(s: &[f32], rate: u32) -> f32 {
        let crossings = s
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f32 / 2.0 / (s.len() as f32 / rate as f32)
    }

    #[test]
    fn converts_44k1_to_48k_keeping_pitch_and_length() {
        let mut c = RateConverter::new(44_100, 48_000).unwrap();
        let input = tone(44_100, 1000.0, 44_100);
        let mut out = Vec::new();
        for chunk in input.chunks(512) {
            c.process(chunk, &mut out).unwrap();
        }
        // Nearly one second of output (minus what is still buffered).
        assert!(out.len() > 47_000 && out.len() <= 48_000, "{}", out.len());
        let tail = &out[c.delay() + 1000..];
        let hz = zero_crossing_hz(tail, 48_000);
        assert!((hz - 1000.0).abs() < 10.0, "{hz}");
    }

    #[test]
    fn passthrough_and_mixing() {
        let mut c = RateConverter::new(48_000, 48_000).unwrap();
        let mut out = Vec::new();
        c.process(&[0.1, 0.2], &mut out).unwrap();
        assert_eq!(out, vec![0.1, 0.2]);
        let mut m = Vec::new();
        downmix(&[0.2, 0.4, -1.0, 1.0], 2, &mut m);
        assert!((m[0] - 0.3).abs() < 1e-6 && m[1].abs() < 1e-6);
        let mut s = Vec::new();
        upmix(&[0.5, 0.25], 2, &mut s);
        assert_eq!(s, vec![0.5, 0.5, 0.25, 0.25]);
    }
}
