//! The repository's own `api/Dockerfile` reads only `api/`, so a build of it sends only that
//! subtree of the context (see `BuildContext::select`).

use std::collections::BTreeMap;

use ecrbuild::context::{context_needs, ContextNeeds, SourceRoot};

#[test]
fn the_api_dockerfile_reads_only_api() {
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/Dockerfile"),
    )
    .unwrap();
    let mut args = BTreeMap::new();
    args.insert("GO_IMAGE".to_string(), "local/golang:bookworm".to_string());
    assert_eq!(
        context_needs(dockerfile.as_bytes(), &args),
        ContextNeeds::Subtrees {
            roots: vec![SourceRoot {
                path: "api".into(),
                wildcard: false
            }],
            base_images: vec!["local/golang:bookworm".into()],
        }
    );
    // Without the build argument, the ARG's default names the image.
    match context_needs(dockerfile.as_bytes(), &BTreeMap::new()) {
        ContextNeeds::Subtrees { base_images, .. } => {
            assert_eq!(base_images, vec!["golang:1.22-bookworm".to_string()])
        }
        other => panic!("{other:?}"),
    }
}
