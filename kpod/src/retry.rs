//! Retrying a whole push or pull after a network error, as `--retry` asks.

use std::time::Duration;

/// Runs `attempt` until it succeeds, fails with an error `is_network` does
/// not accept, or has been retried `retries` times; waits 2, 4, 8, ... (at
/// most 32) seconds between attempts. `what` names the operation in the log.
pub fn with_retries<T, E: std::fmt::Display>(
    what: &str,
    retries: u32,
    mut attempt: impl FnMut() -> Result<T, E>,
    is_network: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut done = 0;
    loop {
        match attempt() {
            Err(err) if is_network(&err) && done < retries => {
                done += 1;
                let delay = Duration::from_secs(1 << done.min(5));
                log::warn!(
                    "{what} failed: {err}; retrying in {}s ({done}/{retries})",
                    delay.as_secs()
                );
                std::thread::sleep(delay);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_network_errors_and_only_so_often() {
        let mut calls = 0;
        let r: Result<(), String> = with_retries(
            "x",
            0,
            || {
                calls += 1;
                Err("net".to_string())
            },
            |_| true,
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r: Result<(), String> = with_retries(
            "x",
            5,
            || {
                calls += 1;
                Err("bad input".to_string())
            },
            |e| e == "net",
        );
        assert_eq!(r.unwrap_err(), "bad input");
        assert_eq!(calls, 1);
    }
}
