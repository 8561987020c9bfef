//! The OpenFeature provider over [`Flags`].

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason, EvaluationResult,
    FlagMetadata, StructValue,
};

use crate::flags::{Evaluation, FlagError, Flags, Reason};

/// Flag metadata key: the resolved variant's share of users, in basis points.
pub const METADATA_WEIGHT: &str = "cutover.weight_bp";
/// Flag metadata key: the user's bucket (`0..10000`), when the flag is split.
pub const METADATA_BUCKET: &str = "cutover.bucket";

/// An OpenFeature provider (`open-feature` crate) that evaluates [`Flags`] in process.
///
/// Following the OpenFeature spec (providers, section 2):
///
/// - metadata name `cutover`; status always `READY` (the flags are in memory);
/// - every success sets the value, the variant (the revision's name), the reason (`STATIC`
///   when one variant holds every user, `SPLIT` when the user's bucket chose) and flag metadata
///   ([`METADATA_WEIGHT`], and [`METADATA_BUCKET`] for a split), and no error;
/// - failures are errors with a code: `FLAG_NOT_FOUND`, `TYPE_MISMATCH` (a boolean flag asked
///   for a string, or any flag for an integer, float or structure), `TARGETING_KEY_MISSING`
///   (a split flag evaluated without a targeting key). The OpenFeature client turns them into
///   the caller's default value with reason `ERROR`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_openfeature::{CutoverProvider, FlagDefinition, Flags};
/// use open_feature::{EvaluationContext, OpenFeature};
///
/// let flags = Flags::new();
/// flags.define(FlagDefinition::boolean("new-path", "old", "new")?)?;
/// let mut api = OpenFeature::singleton_mut().await;
/// api.set_provider(CutoverProvider::new(flags.clone())).await;
/// let client = api.create_client();
/// let user = EvaluationContext::default().with_targeting_key("user-42");
/// let details = client
///     .get_bool_details("new-path", Some(&user), None)
///     .await
///     .map_err(|e| format!("{e:?}"))?;
/// assert_eq!((details.value, details.variant.as_deref()), (false, Some("old")));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CutoverProvider {
    flags: Flags,
    metadata: ProviderMetadata,
}

impl CutoverProvider {
    /// A provider over `flags`.
    pub fn new(flags: Flags) -> Self {
        CutoverProvider {
            flags,
            metadata: ProviderMetadata::new("cutover"),
        }
    }

    fn evaluate(&self, key: &str, context: &EvaluationContext) -> EvaluationResult<Evaluation> {
        self.flags
            .evaluate(key, context.targeting_key.as_deref())
            .map_err(|e| error(&e))
    }

    fn mismatch(&self, key: &str, context: &EvaluationContext, expected: &str) -> EvaluationError {
        match self.evaluate(key, context) {
            Err(e) if e.code == EvaluationErrorCode::FlagNotFound => e,
            _ => EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some(format!(
                    "flag `{key}` holds boolean or string values, not {expected}"
                )),
            },
        }
    }
}

/// The details of a successful evaluation.
fn details<T>(value: T, e: &Evaluation) -> ResolutionDetails<T> {
    let mut metadata =
        FlagMetadata::default().with_value(METADATA_WEIGHT, i64::from(e.weight().basis_points()));
    if let Some(bucket) = e.bucket() {
        metadata.add_value(METADATA_BUCKET, i64::from(bucket));
    }
    ResolutionDetails {
        value,
        variant: Some(e.variant().as_str().to_owned()),
        reason: Some(match e.reason() {
            Reason::Static => EvaluationReason::Static,
            Reason::Split => EvaluationReason::Split,
        }),
        flag_metadata: Some(metadata),
    }
}

/// The OpenFeature error code of a flag error.
fn error(e: &FlagError) -> EvaluationError {
    let code = match e {
        FlagError::NotFound { .. } => EvaluationErrorCode::FlagNotFound,
        FlagError::TargetingKeyMissing { .. } => EvaluationErrorCode::TargetingKeyMissing,
        FlagError::TypeMismatch { .. } => EvaluationErrorCode::TypeMismatch,
        FlagError::Duplicate { .. }
        | FlagError::UnknownVariant { .. }
        | FlagError::Invalid { .. } => EvaluationErrorCode::General("flag definition".to_owned()),
    };
    EvaluationError {
        code,
        message: Some(e.to_string()),
    }
}

#[async_trait]
impl FeatureProvider for CutoverProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        ProviderStatus::Ready
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let e = self.evaluate(flag_key, evaluation_context)?;
        let value = e.as_bool().map_err(|e| error(&e))?;
        Ok(details(value, &e))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        let e = self.evaluate(flag_key, evaluation_context)?;
        let value = e.as_str().map_err(|e| error(&e))?.to_owned();
        Ok(details(value, &e))
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        Err(self.mismatch(flag_key, evaluation_context, "integers"))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        Err(self.mismatch(flag_key, evaluation_context, "floats"))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        Err(self.mismatch(flag_key, evaluation_context, "structures"))
    }
}
