//! Value parsers for flags with a range, so that clap rejects a value out of range before any
//! work starts, with a message naming the flag (`invalid value '0' for '--threads <N>':
//! expected a whole number, 1 or more`) and exit status 2.

/// A whole number of at least `MIN`: threads, a context or batch size, repetitions.
pub fn at_least<const MIN: usize>(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= MIN => Ok(n),
        _ => Err(format!("expected a whole number, {MIN} or more")),
    }
}

/// A whole number from `MIN` to `MAX`: a buffer size that is allocated at once.
pub fn between<const MIN: usize, const MAX: usize>(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {MIN} to {MAX}")),
    }
}

/// A number of tokens to generate, or -1 for no limit.
pub fn token_limit(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err("expected a number of tokens, or -1 for no limit".to_owned()),
    }
}

/// A fraction from 0 to 1 (NaN refused).
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("expected a number from 0 to 1".to_owned()),
    }
}

/// A finite number of 0 or more.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("expected a finite number, 0 or more".to_owned()),
    }
}

/// A log-probability: a finite number, 0 or less.
pub fn log_prob(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x <= 0.0 => Ok(x),
        _ => Err("expected a log-probability in nats: a finite number, 0 or less".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_at_their_edges() {
        assert_eq!(at_least::<1>("1"), Ok(1));
        assert!(at_least::<1>("0").is_err() && at_least::<2>("1").is_err() && at_least::<1>("-3").is_err());
        assert_eq!(between::<1, 4>("4"), Ok(4));
        assert!(between::<1, 4>("5").is_err() && between::<1, 4>("0").is_err());
        assert_eq!(token_limit("-1"), Ok(-1));
        assert_eq!(token_limit("0"), Ok(0));
        assert!(token_limit("-2").is_err() && token_limit("x").is_err());
        assert_eq!(fraction("1"), Ok(1.0));
        assert!(fraction("1.01").is_err() && fraction("NaN").is_err() && fraction("-0.1").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(non_negative("inf").is_err() && non_negative("-1e-9").is_err() && non_negative("nan").is_err());
        assert_eq!(log_prob("-1.5"), Ok(-1.5));
        assert!(log_prob("0.1").is_err() && log_prob("-inf").is_err() && log_prob("nan").is_err());
    }
}
