//! radiogate-hal: the hardware abstraction layer of radiogate.
//!
//! This crate is a placeholder reserved by the gateway-core issue; the radio bridge issue fills it
//! with the PTT output, line input and audio source/sink traits and their backends (serial, GPIO
//! cdev, CM108, rigctld, cpal, simulated).
