//! One talk spurt as an Ogg Opus stream (RFC 7845), written from the RTP payloads as they
//! arrive (no transcoding; issue 14).
//!
//! - Header packets: `OpusHead` (version 1, 1 output channel, pre-skip [`PRE_SKIP`] samples,
//!   input rate 48 kHz, mapping family 0) and `OpusTags` (vendor `radiogate`, the caller's
//!   comments), each on its own page as RFC 7845 §3 requires.
//! - Audio: each payload is one Ogg packet; the granule position counts 48 kHz samples
//!   (RFC 7845 §4), taken from each packet's TOC (RFC 6716 §3.1). Missing packets (an RTP
//!   timestamp gap) and pauses are filled with 20 ms Opus silence frames, so playback keeps
//!   real time. A packet from the past (reordered, duplicated) is dropped.
//! - Pages end at least every [`PAGE_SAMPLES`] (1 s of audio): a killed gateway loses at most
//!   the last second, and what is on disk plays.
//!
//! Pure over any [`Write`]: the recorder gives it a file.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use std::io::{self, Write};

/// Samples the decoder drops at the start (RFC 7845 §4.2; libopus's usual encoder delay).
pub const PRE_SKIP: u16 = 312;
/// A page ends once it holds this many samples (1 s at 48 kHz).
pub const PAGE_SAMPLES: u64 = 48_000;
/// The longest gap filled with silence, samples (10 s); a longer one starts after the gap
/// without filling (a timestamp jump, not a pause).
pub const MAX_FILL: u32 = 480_000;
/// A 20 ms Opus frame of silence (CELT fullband, 20 ms, one frame: TOC 0xF8 and an
/// all-silence range-coder payload).
pub const SILENCE_20MS: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1), or `None` for an
/// empty or malformed packet (more than 120 ms, or a code-3 packet without its count byte).
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let total = frame * frames;
    (frames > 0 && total <= 5_760).then_some(total)
}

/// Why a packet was not written.
#[derive(Debug, thiserror::Error)]
pub enum OggOpusError {
    /// Writing failed (disk full, file closed).
    #[error("recording write: {0}")]
    Io(#[from] io::Error),
    /// The payload is not an Opus packet (see [`packet_samples`]).
    #[error("not an Opus packet ({0} bytes)")]
    NotOpus(usize),
}

/// What [`SpurtWriter::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written, after this many 20 ms silence frames filling a gap.
    Written {
        /// Silence frames written before it.
        filled: u32,
    },
    /// Dropped: its timestamp is before the end of what is written (late or duplicate).
    Late,
}

/// Writes one spurt. Call [`SpurtWriter::finish`] at its end (the last page is marked
/// end-of-stream); a writer dropped without it leaves a file whose last page is the last
/// one flushed, which players accept.
pub struct SpurtWriter<W: Write> {
    out: PacketWriter<'static, W>,
    serial: u32,
    /// Samples accounted for so far (the granule position of the last packet written).
    granule: u64,
    /// Granule at the start of the current page.
    page_start: u64,
    /// The RTP timestamp just after the last packet written.
    next_ts: Option<u32>,
    /// The last packet, held back until the next one (or `finish`) so that the stream's last
    /// packet can carry the end-of-stream flag: (payload, granule after it).
    held: Option<(Vec<u8>, u64)>,
}

impl<W: Write> SpurtWriter<W> {
    /// Starts a stream with serial number `serial` on `out`: writes and flushes the two
    /// header pages. `tags` become `KEY=value` comments in `OpusTags`.
    ///
    /// # Errors
    /// [`OggOpusError::Io`] when `out` cannot be written.
    pub fn new(out: W, serial: u32, tags: &[(&str, &str)]) -> Result<Self, OggOpusError> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // output channels
        head.extend_from_slice(&PRE_SKIP.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo, no table
        let vendor = b"radiogate";
        let mut comments = Vec::new();
        comments.extend_from_slice(b"OpusTags");
        comments.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        comments.extend_from_slice(vendor);
        comments.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for (k, v) in tags {
            let c = format!("{k}={v}");
            comments.extend_from_slice(&(c.len() as u32).to_le_bytes());
            comments.extend_from_slice(c.as_bytes());
        }
        let mut out = PacketWriter::new(out);
        out.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        out.write_packet(comments, serial, PacketWriteEndInfo::EndPage, 0)?;
        out.inner_mut().flush()?;
        Ok(Self {
            out,
            serial,
            granule: 0,
            page_start: 0,
            next_ts: None,
            held: None,
        })
    }

    /// Adds one RTP payload with RTP timestamp `rtp_ts` (48 kHz clock). A gap since the last
    /// packet up to [`MAX_FILL`] is filled with silence first.
    ///
    /// # Errors
    /// [`OggOpusError::NotOpus`] for a payload without a valid TOC (nothing is written),
    /// [`OggOpusError::Io`] when the output fails.
    pub fn push(&mut self, rtp_ts: u32, payload: &[u8]) -> Result<Pushed, OggOpusError> {
        let samples = packet_samples(payload).ok_or(OggOpusError::NotOpus(payload.len()))?;
        let mut filled = 0;
        if let Some(next) = self.next_ts {
            let gap = rtp_ts.wrapping_sub(next);
            if gap > u32::MAX / 2 {
                return Ok(Pushed::Late);
            }
            if gap <= MAX_FILL {
                filled = gap / 960;
                for _ in 0..filled {
                    self.emit(SILENCE_20MS.to_vec(), 960)?;
                }
            }
        }
        self.emit(payload.to_vec(), samples)?;
        self.next_ts = Some(rtp_ts.wrapping_add(samples));
        Ok(Pushed::Written { filled })
    }

    /// Samples written so far (48 kHz), pre-skip included: the duration is
    /// `samples() - PRE_SKIP` when positive.
    pub fn samples(&self) -> u64 {
        self.granule
    }

    /// Writes the held packet (ending the page when it holds a second of audio) and holds
    /// `packet`.
    fn emit(&mut self, packet: Vec<u8>, samples: u32) -> Result<(), OggOpusError> {
        self.granule += u64::from(samples);
        if let Some((p, g)) = self.held.replace((packet, self.granule)) {
            let end = if g - self.page_start >= PAGE_SAMPLES {
                self.page_start = g;
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.out.write_packet(p, self.serial, end, g)?;
            if end == PacketWriteEndInfo::EndPage {
                self.out.inner_mut().flush()?;
            }
        }
        Ok(())
    }

    /// Ends the stream: writes the last packet (a silence frame if none was pushed) with
    /// the end-of-stream flag, flushes, and returns the output and the samples written.
    ///
    /// # Errors
    /// [`OggOpusError::Io`] when the output fails.
    pub fn finish(mut self) -> Result<(W, u64), OggOpusError> {
        if self.held.is_none() {
            self.emit(SILENCE_20MS.to_vec(), 960)?;
        }
        if let Some((p, g)) = self.held.take() {
            self.out
                .write_packet(p, self.serial, PacketWriteEndInfo::EndStream, g)?;
        }
        let mut out = self.out.into_inner();
        out.flush()?;
        Ok((out, self.granule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ogg::reading::PacketReader;
    use std::io::Cursor;

    fn packets(bytes: &[u8]) -> Vec<ogg::Packet> {
        let mut r = PacketReader::new(Cursor::new(bytes.to_vec()));
        let mut v = Vec::new();
        while let Some(p) = r.read_packet().unwrap() {
            v.push(p);
        }
        v
    }

    /// 20 ms of speech-like audio: a 440 Hz tone, Opus-encoded with libopus.
    fn encoded(frames: usize) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        (0..frames)
            .map(|f| {
                let pcm: Vec<i16> = (0..960)
                    .map(|i| {
                        let t = (f * 960 + i) as f64 / 48_000.0;
                        ((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16
                    })
                    .collect();
                enc.encode_vec(&pcm, 1500).unwrap()
            })
            .collect()
    }

    #[test]
    fn toc_durations() {
        assert_eq!(packet_samples(&[0xF8, 0xFF, 0xFE]), Some(960)); // CELT FB 20 ms
        assert_eq!(packet_samples(&[0x08]), Some(960)); // SILK NB 20 ms
        assert_eq!(packet_samples(&[0x09]), Some(1_920)); // SILK NB 20 ms x 2
        assert_eq!(packet_samples(&[0x0B, 0x03]), Some(2_880)); // code 3, 3 frames of 20 ms
        assert_eq!(packet_samples(&[0x0B]), None); // code 3 without its count byte
        assert_eq!(packet_samples(&[0x1B, 0x03]), None); // 3 x 60 ms > 120 ms
        assert_eq!(packet_samples(&[]), None);
    }

    #[test]
    fn headers_then_audio_with_granules_gaps_filled_and_late_packets_dropped() {
        let frames = encoded(150);
        let mut w =
            SpurtWriter::new(Vec::new(), 7, &[("TALKER", "ana"), ("CHANNEL", "ops")]).unwrap();
        let mut ts = 1_000u32;
        for (i, f) in frames.iter().enumerate() {
            if i == 60 {
                ts = ts.wrapping_add(5 * 960); // 5 packets lost: 100 ms of silence
            }
            let p = w.push(ts, f).unwrap();
            assert_eq!(
                p,
                Pushed::Written {
                    filled: if i == 60 { 5 } else { 0 }
                }
            );
            ts = ts.wrapping_add(960);
        }
        assert_eq!(w.push(1_000, &frames[0]).unwrap(), Pushed::Late);
        assert!(matches!(w.push(ts, &[]), Err(OggOpusError::NotOpus(0))));
        let (bytes, samples) = w.finish().unwrap();
        assert_eq!(samples, (150 + 5) * 960);

        let p = packets(&bytes);
        assert_eq!(&p[0].data[..8], b"OpusHead");
        assert_eq!(p[0].data[9], 1, "mono output");
        assert_eq!(u16::from_le_bytes([p[0].data[10], p[0].data[11]]), PRE_SKIP);
        assert_eq!(&p[1].data[..8], b"OpusTags");
        let tags = String::from_utf8_lossy(&p[1].data);
        assert!(tags.contains("TALKER=ana") && tags.contains("CHANNEL=ops"));
        let audio = &p[2..];
        assert_eq!(audio.len(), 155);
        assert_eq!(audio.iter().filter(|a| a.data == SILENCE_20MS).count(), 5);
        assert!(audio.last().unwrap().last_in_stream());
        assert_eq!(audio.last().unwrap().absgp_page(), samples);
        // Pages end at least every second: 3.1 s of audio make at least 3 audio pages.
        let page_ends = audio.iter().filter(|a| a.last_in_page()).count();
        assert!(page_ends >= 3, "{page_ends} pages");
        let mut last = 0;
        for a in audio.iter().filter(|a| a.last_in_page()) {
            assert!(a.absgp_page() > last && a.absgp_page() - last <= PAGE_SAMPLES + 960);
            last = a.absgp_page();
        }

        // It decodes: every packet, and the tone is there (not silence) where audio was sent.
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 5_760];
        let mut energies = Vec::new();
        for a in audio {
            let n = dec.decode(&a.data, &mut pcm, false).unwrap();
            assert_eq!(n, 960);
            let e = pcm[..n].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n as f64;
            energies.push(e.sqrt());
        }
        assert!(energies[30] > 1_000.0, "tone decoded: rms {}", energies[30]);
        assert!(
            energies[62] < 100.0,
            "the gap plays as silence: rms {}",
            energies[62]
        );
    }

    #[test]
    fn a_spurt_with_no_packet_is_a_valid_stream() {
        let (bytes, samples) = SpurtWriter::new(Vec::new(), 1, &[])
            .unwrap()
            .finish()
            .unwrap();
        let p = packets(&bytes);
        assert_eq!(p.len(), 3);
        assert!(p[2].last_in_stream());
        assert_eq!(samples, 960);
    }
}
