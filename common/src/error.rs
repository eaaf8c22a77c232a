//! What every layer's errors share: [`ErrorChain`], the one way an error is written to the
//! log with its causes. Each library module defines its own typed error; the HTTP layer maps
//! the domain's errors to the spec's answers once, in [`crate::http::oci_error`].

/// Displays an error with its whole `source()` chain, for logs.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
