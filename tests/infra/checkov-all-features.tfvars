# checkov's second pass over terraform/ (tests/infra/check.sh): every optional
# feature on, so that resources behind count = 0 are scanned too (checkov
# skips most of them otherwise).
project                          = "avarobotics"
github_repository                = "avachen2005/avarobotics"
services                         = { api = {}, worker = {} }
enable_export                    = true
enable_batch_builds              = true
enable_wait_scan                 = true
extra_image_tag                  = "prod"
ecrbuild_download_url            = "https://example.invalid/ecrbuild-x86_64-unknown-linux-musl"
ecrbuild_download_sha256         = "0000000000000000000000000000000000000000000000000000000000000000"
ecrbuild_download_url_aarch64    = "https://example.invalid/ecrbuild-aarch64-unknown-linux-musl"
ecrbuild_download_sha256_aarch64 = "0000000000000000000000000000000000000000000000000000000000000000"
