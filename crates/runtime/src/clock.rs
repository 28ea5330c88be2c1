//! The one clock type: the wall clock in production, a fake one in tests. The domain
//! never reads the time itself; services pass it in from here.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// The time now, injectable so tests can move it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The real wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_tells_the_wall_time() {
        let before = Utc::now();
        let now = system_clock()();
        assert!(before <= now && now <= Utc::now(), "{before} {now}");
    }
}
