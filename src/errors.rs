//! How errors are shown to people: one line, every cause once.

/// An error and its causes on one line, each message once (sqlx repeats a cause in its message).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_repeated_in_its_context_is_shown_once() {
        let error = anyhow::anyhow!("deadlock detected").context("committing: deadlock detected");
        assert_eq!(one_line(&error), "committing: deadlock detected");
        let error = anyhow::anyhow!("refused\nby peer").context("connecting");
        assert_eq!(one_line(&error), "connecting: refused by peer");
    }
}
