//! lint
pub(crate) fn lint(_: &crate::cli::LintArgs) -> Result<crate::exit::Exit, crate::exit::Failure> { todo!() }
