//! The two Istio custom resources cutover reads and writes, as thin typed wrappers: typed
//! metadata, and the `spec` kept as JSON so that every field cutover does not manage survives
//! a read-modify-write exactly as it was read.

use std::borrow::Cow;

use kube::Resource;
use kube::api::ObjectMeta;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The API group of both resources.
pub const GROUP: &str = "networking.istio.io";
/// The API version cutover uses (`networking.istio.io/v1`, Istio 1.22 and later).
pub const VERSION: &str = "v1";

macro_rules! istio_resource {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// `networking.istio.io/v1`.
            pub api_version: String,
            /// The kind.
            pub kind: String,
            /// Standard object metadata.
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// The spec, exactly as the API server returned it.
            #[serde(default)]
            pub spec: Map<String, Value>,
            /// The status Istio writes (validation messages), if any.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<Value>,
        }

        impl $name {
            /// An object called `name` in `namespace` with `spec`.
            pub fn new(namespace: &str, name: &str, spec: Value) -> Self {
                $name {
                    api_version: format!("{GROUP}/{VERSION}"),
                    kind: $kind.to_owned(),
                    metadata: ObjectMeta {
                        name: (!name.is_empty()).then(|| name.to_owned()),
                        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: match spec {
                        Value::Object(map) => map,
                        _ => Map::new(),
                    },
                    status: None,
                }
            }
        }

        impl Default for $name {
            /// An object with no name and an empty spec.
            fn default() -> Self {
                $name::new("", "", Value::Null)
            }
        }

        impl Resource for $name {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind((): &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group((): &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }
            fn version((): &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }
            fn plural((): &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

istio_resource!(
    /// An Istio `VirtualService` (`networking.istio.io/v1`).
    VirtualService,
    "VirtualService",
    "virtualservices"
);

istio_resource!(
    /// An Istio `DestinationRule` (`networking.istio.io/v1`).
    DestinationRule,
    "DestinationRule",
    "destinationrules"
);

/// The resource names as RBAC rules spell them, for error messages.
pub(crate) const VIRTUAL_SERVICES: &str = "virtualservices.networking.istio.io";
/// See [`VIRTUAL_SERVICES`].
pub(crate) const DESTINATION_RULES: &str = "destinationrules.networking.istio.io";
