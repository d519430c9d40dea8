//! What a device model's CRD says, for the reconciler and the admission webhook alike:
//! the CRD of a model (by group and kind, never by guessing the plural) and the versions
//! it serves. It reads CRDs the callers have already observed; it makes no API calls.

use crds::v1alpha1::TypeMeta;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The CRD that defines `model`'s kind in its group, unless it is being deleted.
pub fn model_crd<'a>(
    crds: impl IntoIterator<Item = &'a CustomResourceDefinition>,
    model: &TypeMeta,
) -> Option<&'a CustomResourceDefinition> {
    let (group, _) = model.group_version();
    crds.into_iter().find(|c| {
        c.spec.group == group
            && c.spec.names.kind == model.kind
            && c.metadata.deletion_timestamp.is_none()
    })
}

/// The versions `crd` serves, in its order.
pub fn served_versions(crd: &CustomResourceDefinition) -> Vec<String> {
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.clone())
        .collect()
}
