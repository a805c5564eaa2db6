//! In-band DTMF detection (Goertzel), for callers whose DTMF arrives as audio rather than as
//! RFC 4733 telephone-events.

/// Row (low group) frequencies in Hz.
pub const ROW_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies in Hz.
pub const COL_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The (row, column) frequencies of a DTMF key.
pub fn frequencies(digit: char) -> Option<(f64, f64)> {
    let digit = digit.to_ascii_uppercase();
    KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == digit)
            .map(|c| (ROW_HZ[r], COL_HZ[c]))
    })
}
