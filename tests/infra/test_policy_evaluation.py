"""Evaluates the rendered IAM documents against concrete requests.

Usage: python3 test_policy_evaluation.py DOCUMENTS_JSON

DOCUMENTS_JSON is written by check.sh from tests/infra/render (the policies
module with the example inputs: avachen2005/avarobotics, branch main, account
123456789012, region ap-northeast-1).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from iam_eval import (  # noqa: E402
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Request,
    Unsupported,
    conditions_hold,
    evaluate,
)

ACCOUNT = "123456789012"
REGION = "ap-northeast-1"
REPO = "avachen2005/avarobotics"
HOST = "token.actions.githubusercontent.com"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}"
PROJECT_ARN = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/avarobotics-prod-api-build"
REPOSITORY_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/avarobotics-prod-api"
# The render module has two services: api and worker.
REPOSITORY_ARNS = [REPOSITORY_ARN, f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/avarobotics-prod-worker"]
OTHER_REPOSITORY_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other"
LOG_GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/codebuild/avarobotics-prod-api-build"

DOCS: dict[str, dict] = {}


def web_identity(sub: str | None, aud: str | None = "sts.amazonaws.com", provider: str = PROVIDER_ARN,
                 action: str = "sts:AssumeRoleWithWebIdentity") -> Request:
    context = {}
    if sub is not None:
        context[f"{HOST}:sub"] = sub
    if aud is not None:
        context[f"{HOST}:aud"] = aud
    return Request(action=action, principal={"Federated": provider}, context=context)


MAIN = f"repo:{REPO}:ref:refs/heads/main"

# Every way a token other than "a workflow on main of this repository" can look.
GITHUB_DENIED = {
    "fork (other owner, same name)": web_identity("repo:someone-else/avarobotics:ref:refs/heads/main"),
    "pull request": web_identity(f"repo:{REPO}:pull_request"),
    "another branch": web_identity(f"repo:{REPO}:ref:refs/heads/feature/x"),
    "branch whose name starts with main": web_identity(f"repo:{REPO}:ref:refs/heads/main-hotfix"),
    "branch nested under main": web_identity(f"repo:{REPO}:ref:refs/heads/main/evil"),
    "tag": web_identity(f"repo:{REPO}:ref:refs/tags/v1.0.0"),
    "environment sub": web_identity(f"repo:{REPO}:environment:prod"),
    "another repository, same owner": web_identity("repo:avachen2005/other:ref:refs/heads/main"),
    "repository whose name starts with ours": web_identity("repo:avachen2005/avarobotics-fork:ref:refs/heads/main"),
    "owner in other letter case": web_identity("repo:AvaChen2005/avarobotics:ref:refs/heads/main"),
    "wrong audience": web_identity(MAIN, aud="https://github.com/avachen2005"),
    "missing audience": web_identity(MAIN, aud=None),
    "missing subject": web_identity(None),
    "another identity provider": web_identity(MAIN, provider=f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"),
    "plain AssumeRole": web_identity(MAIN, action="sts:AssumeRole"),
}


class GitHubTrustPolicy(unittest.TestCase):
    def test_allows_main_of_the_repository(self):
        self.assertEqual(evaluate(DOCS["github_trust_policy"], web_identity(MAIN)), ALLOW)

    def test_denies_everything_else(self):
        for name, request in GITHUB_DENIED.items():
            with self.subTest(name):
                self.assertEqual(evaluate(DOCS["github_trust_policy"], request), IMPLICIT_DENY)

    def test_control_a_loose_policy_would_allow_them(self):
        # Control: the evaluator does allow these tokens when the policy is
        # loose, so the denials above come from the policy, not the evaluator.
        loose = copy.deepcopy(DOCS["github_trust_policy"])
        condition = loose["Statement"][0]["Condition"]
        del condition["StringEquals"][f"{HOST}:sub"]
        condition["StringLike"] = {f"{HOST}:sub": f"repo:{REPO}:*"}
        for name in ("pull request", "another branch", "environment sub", "tag"):
            with self.subTest(name):
                self.assertEqual(evaluate(loose, GITHUB_DENIED[name]), ALLOW)
        no_aud = copy.deepcopy(DOCS["github_trust_policy"])
        del no_aud["Statement"][0]["Condition"]["StringEquals"][f"{HOST}:aud"]
        self.assertEqual(evaluate(no_aud, GITHUB_DENIED["wrong audience"]), ALLOW)


def codebuild_service(account: str | None = ACCOUNT, source_arn: str | None = PROJECT_ARN,
                      service: str = "codebuild.amazonaws.com") -> Request:
    context = {}
    if account is not None:
        context["aws:SourceAccount"] = account
    if source_arn is not None:
        context["aws:SourceArn"] = source_arn
    return Request(action="sts:AssumeRole", principal={"Service": service}, context=context)


class CodeBuildTrustPolicy(unittest.TestCase):
    def test_allows_this_project(self):
        self.assertEqual(evaluate(DOCS["codebuild_trust_policy"], codebuild_service()), ALLOW)

    def test_denies_confused_deputies(self):
        cases = {
            "project in another account": codebuild_service(
                account="210987654321",
                source_arn=f"arn:aws:codebuild:{REGION}:210987654321:project/avarobotics-prod-api-build"),
            "another project in this account": codebuild_service(
                source_arn=f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/other"),
            "project whose name starts with ours": codebuild_service(source_arn=PROJECT_ARN + "-x"),
            "no source ARN": codebuild_service(source_arn=None),
            "no source account": codebuild_service(account=None),
            "another service": codebuild_service(service="ec2.amazonaws.com"),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(DOCS["codebuild_trust_policy"], request), IMPLICIT_DENY)


def start_build(resource: str = PROJECT_ARN, buildspec_override: bool = False,
                action: str = "codebuild:StartBuild") -> Request:
    context = {"codebuild:source.buildspec": "version: 0.2"} if buildspec_override else {}
    return Request(action=action, resource=resource, context=context)


class GitHubPermissions(unittest.TestCase):
    def test_allows_start_build_of_this_project(self):
        self.assertEqual(evaluate(DOCS["github_permissions_policy"], start_build()), ALLOW)

    def test_denies_a_buildspec_override_explicitly(self):
        self.assertEqual(evaluate(DOCS["github_permissions_policy"], start_build(buildspec_override=True)),
                         EXPLICIT_DENY)

    def test_denies_everything_else(self):
        cases = {
            "another project": start_build(resource=f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/other"),
            "project in another region": start_build(resource=PROJECT_ARN.replace(REGION, "us-east-1")),
            "batch build": start_build(action="codebuild:StartBuildBatch"),
            "update the project": start_build(action="codebuild:UpdateProject"),
            "read build results": start_build(action="codebuild:BatchGetBuilds"),
            "push to ECR": Request(action="ecr:PutImage", resource=REPOSITORY_ARN),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(DOCS["github_permissions_policy"], request), IMPLICIT_DENY)


class GitHubPermissionsWithBatchBuilds(unittest.TestCase):
    """enable_batch_builds: the GitHub role may also start a batch of this project."""

    def test_allows_start_build_and_start_build_batch_of_this_project(self):
        doc = DOCS["github_permissions_policy_batch"]
        for action in ("codebuild:StartBuild", "codebuild:StartBuildBatch"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, start_build(action=action)), ALLOW)

    def test_denies_a_buildspec_override_of_either_explicitly(self):
        doc = DOCS["github_permissions_policy_batch"]
        for action in ("codebuild:StartBuild", "codebuild:StartBuildBatch"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, start_build(action=action, buildspec_override=True)), EXPLICIT_DENY)

    def test_denies_everything_else(self):
        doc = DOCS["github_permissions_policy_batch"]
        other = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/other"
        cases = {
            "batch of another project": start_build(resource=other, action="codebuild:StartBuildBatch"),
            "retry a batch": start_build(action="codebuild:RetryBuildBatch"),
            "stop a batch": start_build(action="codebuild:StopBuildBatch"),
            "read batch results": start_build(action="codebuild:BatchGetBuildBatches"),
            "update the project": start_build(action="codebuild:UpdateProject"),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)


class CodeBuildBatchPermissions(unittest.TestCase):
    def test_allows_start_stop_retry_of_this_project(self):
        doc = DOCS["codebuild_batch_permissions_policy"]
        for action in ("codebuild:StartBuild", "codebuild:StopBuild", "codebuild:RetryBuild"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource=PROJECT_ARN)), ALLOW)

    def test_denies_other_projects_and_actions(self):
        doc = DOCS["codebuild_batch_permissions_policy"]
        cases = {
            "start another project": Request("codebuild:StartBuild",
                                             resource=f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/other"),
            "start a project whose name starts with ours": Request("codebuild:StartBuild", resource=PROJECT_ARN + "-x"),
            "start a batch (no nesting)": Request("codebuild:StartBuildBatch", resource=PROJECT_ARN),
            "update the project": Request("codebuild:UpdateProject", resource=PROJECT_ARN),
            "push to ECR": Request("ecr:PutImage", resource=REPOSITORY_ARN),
            "pass a role": Request("iam:PassRole", resource=f"arn:aws:iam::{ACCOUNT}:role/x"),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)


class CodeBuildPermissions(unittest.TestCase):
    PUSH = ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload", "ecr:PutImage"]
    READ = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:DescribeRepositories"]

    def test_allows_what_ecrbuild_does(self):
        doc = DOCS["codebuild_permissions_policy"]
        self.assertEqual(evaluate(doc, Request("ecr:GetAuthorizationToken", resource="*")), ALLOW)
        for repository in REPOSITORY_ARNS:
            for action in self.PUSH + self.READ:
                with self.subTest(action=action, repository=repository):
                    self.assertEqual(evaluate(doc, Request(action, resource=repository)), ALLOW)
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource=f"{LOG_GROUP_ARN}:log-stream:abc")), ALLOW)

    def test_denies_other_repositories_and_actions(self):
        doc = DOCS["codebuild_permissions_policy"]
        cases = {f"{a} on another repository": Request(a, resource=OTHER_REPOSITORY_ARN) for a in self.PUSH + self.READ}
        cases.update({
            "push to a repository whose name starts with ours": Request("ecr:PutImage", resource=REPOSITORY_ARN + "-x"),
            "push to a third service's repository": Request(
                "ecr:PutImage", resource=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/avarobotics-prod-billing"),
            "push to a repository in another account": Request(
                "ecr:PutImage", resource=REPOSITORY_ARN.replace(ACCOUNT, "210987654321")),
            "delete images of the second service": Request("ecr:BatchDeleteImage", resource=REPOSITORY_ARNS[1]),
            "delete images": Request("ecr:BatchDeleteImage", resource=REPOSITORY_ARN),
            "change the lifecycle policy": Request("ecr:PutLifecyclePolicy", resource=REPOSITORY_ARN),
            "change tag mutability": Request("ecr:PutImageTagMutability", resource=REPOSITORY_ARN),
            "read scan findings (wait-scan off)": Request("ecr:DescribeImageScanFindings", resource=REPOSITORY_ARN),
            "create a log group": Request("logs:CreateLogGroup", resource=LOG_GROUP_ARN),
            "write another log group": Request(
                "logs:PutLogEvents",
                resource=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/codebuild/other:log-stream:x"),
            "pass a role": Request("iam:PassRole", resource=f"arn:aws:iam::{ACCOUNT}:role/x"),
        })
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)

    def test_wait_scan_policy_reads_findings_of_this_repository_only(self):
        doc = DOCS["codebuild_wait_scan_policy"]
        for action in ("ecr:DescribeImageScanFindings", "ecr:DescribeImages"):
            with self.subTest(action):
                for repository in REPOSITORY_ARNS:
                    self.assertEqual(evaluate(doc, Request(action, resource=repository)), ALLOW)
                self.assertEqual(evaluate(doc, Request(action, resource=OTHER_REPOSITORY_ARN)), IMPLICIT_DENY)
        self.assertEqual(evaluate(doc, Request("ecr:PutImage", resource=REPOSITORY_ARN)), IMPLICIT_DENY)


EXPORT_PROJECT_ARN = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/avarobotics-prod-api-export"
EXPORT_LOG_GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/codebuild/avarobotics-prod-api-export"
EXPORT_BUCKET = f"avarobotics-prod-api-exports-{ACCOUNT}"
EXPORT_BUCKET_ARN = f"arn:aws:s3:::{EXPORT_BUCKET}"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:avarobotics-prod-api-export"
SYNC_RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventForCodeBuildStartBuildRule"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


class ExportPermissions(unittest.TestCase):
    """The export CodeBuild role: pull the service repositories, write the export prefix."""

    OBJECT = f"{EXPORT_BUCKET_ARN}/exports/avarobotics-prod-api/0123abc.tar"

    def test_allows_pull_write_and_logs(self):
        doc = DOCS["export_permissions_policy"]
        self.assertEqual(evaluate(doc, Request("ecr:GetAuthorizationToken", resource="*")), ALLOW)
        for repository in REPOSITORY_ARNS:
            for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
                with self.subTest(action=action, repository=repository):
                    self.assertEqual(evaluate(doc, Request(action, resource=repository)), ALLOW)
        for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource=self.OBJECT)), ALLOW)
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            with self.subTest(action):
                self.assertEqual(
                    evaluate(doc, Request(action, resource=f"{EXPORT_LOG_GROUP_ARN}:log-stream:x")), ALLOW)

    def test_denies_other_buckets_prefixes_repositories_and_actions(self):
        doc = DOCS["export_permissions_policy"]
        cases = {
            "another bucket": Request("s3:PutObject", resource="arn:aws:s3:::someone-elses-bucket/exports/x.tar"),
            "a bucket whose name starts with ours": Request(
                "s3:PutObject", resource=f"{EXPORT_BUCKET_ARN}-x/exports/x.tar"),
            "another prefix": Request("s3:PutObject", resource=f"{EXPORT_BUCKET_ARN}/other/x.tar"),
            "a prefix that only starts like ours": Request("s3:PutObject", resource=f"{EXPORT_BUCKET_ARN}/exportsX/x.tar"),
            "the bucket root": Request("s3:PutObject", resource=f"{EXPORT_BUCKET_ARN}/x.tar"),
            "read an export": Request("s3:GetObject", resource=self.OBJECT),
            "delete an export": Request("s3:DeleteObject", resource=self.OBJECT),
            "list the bucket": Request("s3:ListBucket", resource=EXPORT_BUCKET_ARN),
            "list multipart uploads": Request("s3:ListBucketMultipartUploads", resource=EXPORT_BUCKET_ARN),
            "change the object ACL": Request("s3:PutObjectAcl", resource=self.OBJECT),
            "change the bucket policy": Request("s3:PutBucketPolicy", resource=EXPORT_BUCKET_ARN),
            "pull from another repository": Request("ecr:BatchGetImage", resource=OTHER_REPOSITORY_ARN),
            "push an image": Request("ecr:PutImage", resource=REPOSITORY_ARN),
            "upload a layer": Request("ecr:InitiateLayerUpload", resource=REPOSITORY_ARN),
            "write the build project's logs": Request(
                "logs:PutLogEvents", resource=f"{LOG_GROUP_ARN}:log-stream:x"),
            "use a KMS key (none configured)": Request("kms:GenerateDataKey", resource=KMS_KEY_ARN),
            "pass a role": Request("iam:PassRole", resource=f"arn:aws:iam::{ACCOUNT}:role/x"),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)

    def test_kms_key_only_through_s3_in_this_region(self):
        doc = DOCS["export_permissions_policy_kms"]
        via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource=KMS_KEY_ARN, context=via_s3)), ALLOW)
        cases = {
            "direct use of the key": Request("kms:Decrypt", resource=KMS_KEY_ARN),
            "through another service": Request("kms:Decrypt", resource=KMS_KEY_ARN,
                                               context={"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}),
            "another key": Request("kms:Decrypt", resource=KMS_KEY_ARN.replace("1234abcd", "ffffffff"), context=via_s3),
            "encrypt with the key": Request("kms:Encrypt", resource=KMS_KEY_ARN, context=via_s3),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)

    def test_trust_is_the_export_project_only(self):
        doc = DOCS["export_trust_policy"]
        self.assertEqual(evaluate(doc, codebuild_service(source_arn=EXPORT_PROJECT_ARN)), ALLOW)
        for name, request in {
            "the image build project": codebuild_service(source_arn=PROJECT_ARN),
            "another account": codebuild_service(account="210987654321",
                                                 source_arn=EXPORT_PROJECT_ARN.replace(ACCOUNT, "210987654321")),
            "no source ARN": codebuild_service(source_arn=None),
        }.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)


class ExportBucketPolicy(unittest.TestCase):
    PRINCIPAL = {"AWS": f"arn:aws:iam::{ACCOUNT}:role/avarobotics-prod-api-export-codebuild"}

    def request(self, action: str, resource: str, tls: str) -> Request:
        return Request(action, resource=resource, principal=self.PRINCIPAL, context={"aws:SecureTransport": tls})

    def test_denies_every_request_without_tls(self):
        doc = DOCS["export_bucket_policy"]
        for action, resource in (("s3:PutObject", f"{EXPORT_BUCKET_ARN}/exports/x.tar"),
                                 ("s3:GetObject", f"{EXPORT_BUCKET_ARN}/exports/x.tar"),
                                 ("s3:ListBucket", EXPORT_BUCKET_ARN)):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, self.request(action, resource, "false")), EXPLICIT_DENY)
                # With TLS the bucket policy neither denies nor grants: the
                # identity policies decide.
                self.assertEqual(evaluate(doc, self.request(action, resource, "true")), IMPLICIT_DENY)


def start_execution_role(source_arn: str | None = STATE_MACHINE_ARN, account: str | None = ACCOUNT,
                         service: str = "states.amazonaws.com") -> Request:
    context = {}
    if account is not None:
        context["aws:SourceAccount"] = account
    if source_arn is not None:
        context["aws:SourceArn"] = source_arn
    return Request(action="sts:AssumeRole", principal={"Service": service}, context=context)


class StateMachinePermissions(unittest.TestCase):
    def test_allows_the_sync_integration_logging_and_tracing(self):
        doc = DOCS["states_permissions_policy"]
        for action in ("codebuild:StartBuild", "codebuild:StopBuild", "codebuild:BatchGetBuilds"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource=EXPORT_PROJECT_ARN)), ALLOW)
        for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource=SYNC_RULE_ARN)), ALLOW)
        for action in ("logs:CreateLogDelivery", "logs:PutResourcePolicy", "xray:PutTraceSegments"):
            with self.subTest(action):
                self.assertEqual(evaluate(doc, Request(action, resource="*")), ALLOW)

    def test_denies_other_projects_rules_and_actions(self):
        doc = DOCS["states_permissions_policy"]
        cases = {
            "start the image build project": Request("codebuild:StartBuild", resource=PROJECT_ARN),
            "start another project": Request("codebuild:StartBuild",
                                             resource=f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/other"),
            "start a batch of the export project": Request("codebuild:StartBuildBatch", resource=EXPORT_PROJECT_ARN),
            "update the export project": Request("codebuild:UpdateProject", resource=EXPORT_PROJECT_ARN),
            "put targets on another rule": Request(
                "events:PutTargets", resource=f"arn:aws:events:{REGION}:{ACCOUNT}:rule/other"),
            "delete the sync rule": Request("events:DeleteRule", resource=SYNC_RULE_ARN),
            "write an export itself": Request("s3:PutObject", resource=f"{EXPORT_BUCKET_ARN}/exports/x"),
            "start another execution": Request("states:StartExecution", resource=STATE_MACHINE_ARN),
            "pass a role": Request("iam:PassRole", resource=f"arn:aws:iam::{ACCOUNT}:role/x"),
        }
        for name, request in cases.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)

    def test_trust_is_the_export_state_machine_only(self):
        doc = DOCS["states_trust_policy"]
        self.assertEqual(evaluate(doc, start_execution_role()), ALLOW)
        for name, request in {
            "another state machine": start_execution_role(source_arn=STATE_MACHINE_ARN + "-x"),
            "another account": start_execution_role(account="210987654321",
                                                    source_arn=STATE_MACHINE_ARN.replace(ACCOUNT, "210987654321")),
            "CodeBuild": start_execution_role(service="codebuild.amazonaws.com"),
            "no source ARN": start_execution_role(source_arn=None),
        }.items():
            with self.subTest(name):
                self.assertEqual(evaluate(doc, request), IMPLICIT_DENY)


STAGING_PREFIX = "ecrbuild-staging-"


def expiring_rules(policy: dict, images: list[dict], now: float, counts_selected: bool = False) -> dict[str, int]:
    """Returns the digests an ECR lifecycle policy expires, each with the
    priority of the rule that expires it, as ECR documents it.

    Rules run by priority; an image selected by a rule is never expired by a
    lower-priority rule; imageCountMoreThan keeps the newest N selected
    images; sinceImagePushed expires those older than N days. Whether a
    lower-priority rule still counts the images a higher one selected is
    `counts_selected`: False leaves them out of its count; True counts them
    (ECR's "rules can still identify them as if they haven't been expired",
    and its multiple-rules example A), so they take room in its count. Only
    what the policies here use is modelled (one pattern per tagPatternList,
    ages in days).
    """
    import fnmatch
    considered: set[str] = set()
    expired: dict[str, int] = {}
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        sel = rule["selection"]
        if len(sel.get("tagPatternList", [])) > 1:
            raise Unsupported("several patterns in one tagPatternList")
        matching = []
        for image in images:
            if image["digest"] in considered and not counts_selected:
                continue
            if sel["tagStatus"] == "untagged":
                ok = not image["tags"]
            elif sel["tagStatus"] == "tagged":
                pattern = sel["tagPatternList"][0]
                ok = any(fnmatch.fnmatchcase(t, pattern) for t in image["tags"])
            else:
                ok = True
            if ok:
                matching.append(image)
        if sel["countType"] == "imageCountMoreThan":
            newest_first = sorted(matching, key=lambda i: i["pushed"], reverse=True)
            marked = newest_first[sel["countNumber"]:]
        elif sel["countType"] == "sinceImagePushed":
            if sel.get("countUnit") != "days":
                raise Unsupported(f"countUnit {sel.get('countUnit')}")
            marked = [i for i in matching if now - i["pushed"] > sel["countNumber"] * 86400]
        else:
            raise Unsupported(sel["countType"])
        for image in marked:
            if image["digest"] not in considered:
                expired.setdefault(image["digest"], rule["rulePriority"])
        considered.update(i["digest"] for i in matching)
    return expired


def apply_lifecycle(policy: dict, images: list[dict], now: float, counts_selected: bool = False) -> set[str]:
    """The digests `expiring_rules` expires."""
    return set(expiring_rules(policy, images, now, counts_selected))


def history(commits: int, tagged_children: bool, concurrent: bool, seed: int,
            staging: bool = False) -> tuple[list[dict], list[dict]]:
    """Pushes of `commits` multi-platform images (amd64 + arm64), one per hour.

    Each run pushes its two children (untagged, or tagged <sha>-linux-<arch>)
    and then its index under <sha>; latest follows the newest index. With
    `staging`, the daemon first pushes each child unlabelled under
    ecrbuild-staging-<sha>-linux-<arch>, another digest that no index lists
    (ecrbuild then writes the labelled child). With `concurrent`, the pushes
    of neighbouring runs interleave at random. Returns (images, indexes).
    """
    import random
    rnd = random.Random(seed)
    events = []
    for n in range(commits):
        sha = f"{n:040x}"
        start = n * 3600.0
        jitter = (lambda: rnd.uniform(0, 5400)) if concurrent else (lambda: 0.0)
        t_children = [start + jitter() for _ in ("amd64", "arm64")]
        t_index = max(t_children) + 1 + (rnd.uniform(0, 1800) if concurrent else 0)
        for arch, t in zip(("amd64", "arm64"), t_children):
            if staging:
                events.append({"digest": f"{sha}-{arch}-staged", "pushed": t - 1,
                               "tags": [f"{STAGING_PREFIX}{sha}-linux-{arch}"]})
            events.append({"digest": f"{sha}-{arch}", "pushed": t,
                           "tags": [f"{sha}-linux-{arch}"] if tagged_children else []})
        events.append({"digest": f"{sha}-index", "pushed": t_index, "tags": [sha],
                       "children": [f"{sha}-amd64", f"{sha}-arm64"]})
    newest = max((e for e in events if "children" in e), key=lambda e: e["pushed"])
    newest["tags"].append("latest")
    return events, [e for e in events if "children" in e]


def single_platform_history(commits: int, staging: bool) -> list[dict]:
    """Pushes of `commits` single-platform images, one per hour: with
    `staging`, the daemon's unlabelled image under ecrbuild-staging-<sha>,
    then ecrbuild's labelled image (another digest) under <sha>; latest on
    the newest."""
    events = []
    for n in range(commits):
        sha = f"{n:040x}"
        if staging:
            events.append({"digest": f"{sha}-staged", "pushed": n * 3600.0, "tags": [f"{STAGING_PREFIX}{sha}"]})
        events.append({"digest": f"{sha}-labelled", "pushed": n * 3600.0 + 1, "tags": [sha]})
    events[-1]["tags"].append("latest")
    return events


def staged(images: list[dict]) -> set[str]:
    """The digests of the images the daemon pushed under a staging tag."""
    return {i["digest"] for i in images if any(t.startswith(STAGING_PREFIX) for t in i["tags"])}


def replay(policy: dict, images: list[dict], until: float, counts_selected: bool) -> dict[str, tuple[int, float]]:
    """The policy evaluated once a day (ECR evaluates within 24 hours), at
    time 0 and every 86400 s after until `until`, each image in the
    repository from its push until a rule expires it. Returns every expired
    digest with the priority of the rule that expired it and when."""
    pending = sorted(images, key=lambda i: i["pushed"])
    repository: list[dict] = []
    expired: dict[str, tuple[int, float]] = {}
    now = 0.0
    while now <= until:
        while pending and pending[0]["pushed"] <= now:
            repository.append(pending.pop(0))
        for digest, priority in expiring_rules(policy, repository, now, counts_selected).items():
            expired[digest] = (priority, now)
        repository = [i for i in repository if i["digest"] not in expired]
        now += 86400
    return expired


class LifecyclePolicy(unittest.TestCase):
    """No child of a kept index is ever expired (aws/containers-roadmap#1596)."""

    def check(self, policy: dict, **kwargs) -> list[str]:
        images, indexes = history(**kwargs)
        now = max(i["pushed"] for i in images) + 90 * 86400
        expired = apply_lifecycle(policy, images, now)
        return [c for idx in indexes if idx["digest"] not in expired for c in idx["children"] if c in expired]

    def test_kept_indexes_keep_their_children(self):
        policy = DOCS["lifecycle_policy"]
        for tagged in (False, True):
            for concurrent in (False, True):
                for seed in range(5):
                    with self.subTest(tagged_children=tagged, concurrent=concurrent, seed=seed):
                        broken = self.check(policy, commits=150, tagged_children=tagged, concurrent=concurrent, seed=seed)
                        self.assertEqual(broken, [])

    def test_it_still_expires_old_images(self):
        policy = DOCS["lifecycle_policy"]
        images, indexes = history(commits=150, tagged_children=True, concurrent=False, seed=0)
        expired = apply_lifecycle(policy, images, max(i["pushed"] for i in images))
        kept_indexes = [i for i in indexes if i["digest"] not in expired]
        # The index tagged latest is selected by its own rule, so the SHA rule
        # keeps 50 more: commits 99..149 stay, 0..98 go, with their children.
        self.assertEqual(sorted(i["digest"] for i in kept_indexes), [f"{n:040x}-index" for n in range(99, 150)])
        self.assertTrue(all(f"{n:040x}-index" in expired for n in range(99)))
        # Platform images: the newest 50 x 4 = 200 stay (commits 50..149), so
        # children outlive their index for a while, never the other way round.
        platform_expired = sorted(d for d in expired if not d.endswith("-index"))
        self.assertEqual(platform_expired, sorted(f"{n:040x}-{a}" for n in range(50) for a in ("amd64", "arm64")))

    def test_control_the_old_untagged_rule_breaks_kept_indexes(self):
        # The policy before this change: untagged images expired after 7 days.
        old = {"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                              "countUnit": "days", "countNumber": 7}, "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPatternList": ["latest"],
                                              "countType": "imageCountMoreThan", "countNumber": 1},
             "action": {"type": "expire"}},
            {"rulePriority": 3, "selection": {"tagStatus": "tagged", "tagPatternList": ["*"],
                                              "countType": "imageCountMoreThan", "countNumber": 50},
             "action": {"type": "expire"}},
        ]}
        self.assertNotEqual(self.check(old, commits=150, tagged_children=False, concurrent=False, seed=0), [])
        # And keeping only as many platform images as SHA images breaks them too.
        short = json.loads(json.dumps(DOCS["lifecycle_policy"]))
        for rule in short["rules"]:
            if rule["selection"].get("tagPatternList") == ["*-linux-*"]:
                rule["selection"]["countNumber"] = 50
        self.assertNotEqual(self.check(short, commits=150, tagged_children=True, concurrent=False, seed=0), [])


class StagingImages(unittest.TestCase):
    """The daemon pushes every image under ecrbuild-staging-<tag> and ecrbuild writes the labelled image,
    another digest, under <tag>: the staging rule expires the staging images a day after their push and
    never a published image, under either reading of how a lower rule counts (see expiring_rules)."""

    COUNTINGS = {"higher rules' images left out of the count": False,
                 "higher rules' images counted (ECR's example A)": True}

    def staging_priority(self, policy: dict) -> int:
        [rule] = [r for r in policy["rules"] if r["selection"].get("tagPatternList") == [STAGING_PREFIX + "*"]]
        return rule["rulePriority"]

    def histories(self):
        for tagged in (False, True):
            for concurrent in (False, True):
                images, indexes = history(150, tagged, concurrent, seed=3, staging=True)
                yield f"index, tagged children {tagged}, concurrent {concurrent}", images, indexes
        yield "single platform", single_platform_history(150, staging=True), []

    def test_staging_images_and_only_they_expire_a_day_after_their_push(self):
        policy = DOCS["lifecycle_policy"]
        staging_rule = self.staging_priority(policy)
        for counting, counts_selected in self.COUNTINGS.items():
            for name, images, _ in self.histories():
                last = max(i["pushed"] for i in images)
                pushed = {i["digest"]: i["pushed"] for i in images}
                for days_after in (0.5, 3):
                    until = last + days_after * 86400
                    # The last daily evaluation: a staging image is gone when it was a day old by then.
                    evaluated = until // 86400 * 86400
                    with self.subTest(counting=counting, history=name, days_after=days_after):
                        expired = replay(policy, images, until, counts_selected)
                        by_staging = {d for d, (priority, _) in expired.items() if priority == staging_rule}
                        self.assertEqual(by_staging, {d for d in staged(images) if evaluated - pushed[d] > 86400})
                        # Each at the first daily evaluation more than a day after its push.
                        for digest in by_staging:
                            age = expired[digest][1] - pushed[digest]
                            self.assertTrue(86400 < age <= 2 * 86400, (digest, age))

    def test_kept_indexes_keep_their_children_with_staging_images(self):
        policy = DOCS["lifecycle_policy"]
        for counting, counts_selected in self.COUNTINGS.items():
            for name, images, indexes in self.histories():
                if not indexes:
                    continue
                until = max(i["pushed"] for i in images) + 90 * 86400
                with self.subTest(counting=counting, history=name):
                    expired = replay(policy, images, until, counts_selected)
                    broken = [c for idx in indexes if idx["digest"] not in expired
                              for c in idx["children"] if c in expired]
                    self.assertEqual(broken, [])
                    newest = max(indexes, key=lambda i: i["pushed"])["digest"]
                    self.assertNotIn(newest, expired)

    def test_published_images_expire_as_they_would_without_staging_images(self):
        # With a lower rule's count leaving out what a higher rule selected, staging images change
        # nothing about the published images. (Counted, they would take room in the platform and SHA
        # rules' counts while they are younger than a day: README.md, "Lifecycle".)
        policy = DOCS["lifecycle_policy"]
        for tagged in (False, True):
            for concurrent in (False, True):
                with self.subTest(tagged_children=tagged, concurrent=concurrent):
                    images, _ = history(150, tagged, concurrent, seed=5, staging=True)
                    published, _ = history(150, tagged, concurrent, seed=5, staging=False)
                    until = max(i["pushed"] for i in images) + 10 * 86400
                    with_staging = set(replay(policy, images, until, False)) - staged(images)
                    self.assertEqual(with_staging, set(replay(policy, published, until, False)))
        single = set(replay(policy, single_platform_history(150, True), 150 * 3600.0, False))
        alone = set(replay(policy, single_platform_history(150, False), 150 * 3600.0, False))
        self.assertEqual(single - staged(single_platform_history(150, True)), alone)

    def test_control_a_staging_tag_on_the_published_image_would_expire_it(self):
        # What the staging rule relies on: ecrbuild writes the labelled image, another digest, under the
        # SHA tag. Were the staged image published as it is (one digest, both tags), the staging rule
        # would expire published images a day after their push.
        policy = DOCS["lifecycle_policy"]
        merged = []
        for image in single_platform_history(150, staging=False):
            merged.append({**image, "tags": image["tags"] + [STAGING_PREFIX + image["tags"][0]]})
        expired = replay(policy, merged, 150 * 3600.0 + 3 * 86400, False)
        self.assertTrue(any(d.endswith("-labelled") for d in expired))
        self.assertNotIn(merged[-1]["digest"], expired, "latest's own rule keeps it")

    def test_control_a_staging_rule_after_the_count_rules_never_expires_by_age(self):
        # The platform and SHA rules' patterns match staging tags: placed after them, the staging rule
        # would never select a staging image, and they would be kept or expired by count instead.
        policy = copy.deepcopy(DOCS["lifecycle_policy"])
        for rule in policy["rules"]:
            if rule["selection"].get("tagPatternList") == [STAGING_PREFIX + "*"]:
                rule["rulePriority"] = 30
        images = single_platform_history(150, staging=True)
        expired = replay(policy, images, 150 * 3600.0 + 3 * 86400, False)
        self.assertFalse(any(priority == 30 for priority, _ in expired.values()))
        self.assertNotEqual(staged(images) & set(expired), staged(images))


class Evaluator(unittest.TestCase):
    """The evaluator's own semantics, so that a bug in it cannot hide a bad policy."""

    def test_string_equals_is_exact_and_case_sensitive(self):
        self.assertTrue(conditions_hold({"StringEquals": {"k": "a"}}, {"k": "a"}))
        self.assertFalse(conditions_hold({"StringEquals": {"k": "a"}}, {"k": "A"}))
        self.assertFalse(conditions_hold({"StringEquals": {"k": "a*"}}, {"k": "ab"}))

    def test_string_like_wildcards(self):
        self.assertTrue(conditions_hold({"StringLike": {"k": "repo:o/r:*"}}, {"k": "repo:o/r:pull_request"}))
        self.assertTrue(conditions_hold({"StringLike": {"k": "a?c"}}, {"k": "abc"}))
        self.assertFalse(conditions_hold({"StringLike": {"k": "a?c"}}, {"k": "abbc"}))

    def test_values_are_ored_and_keys_are_anded(self):
        self.assertTrue(conditions_hold({"StringEquals": {"k": ["a", "b"]}}, {"k": "b"}))
        self.assertFalse(conditions_hold({"StringEquals": {"k": "a", "j": "b"}}, {"k": "a", "j": "c"}))

    def test_missing_keys(self):
        self.assertFalse(conditions_hold({"StringEquals": {"k": "a"}}, {}))
        self.assertTrue(conditions_hold({"StringEqualsIfExists": {"k": "a"}}, {}))
        self.assertTrue(conditions_hold({"Null": {"k": "true"}}, {}))
        self.assertFalse(conditions_hold({"Null": {"k": "false"}}, {}))
        self.assertTrue(conditions_hold({"Null": {"k": "false"}}, {"k": "x"}))

    def test_bool(self):
        self.assertTrue(conditions_hold({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "false"}))
        self.assertFalse(conditions_hold({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}))
        self.assertFalse(conditions_hold({"Bool": {"aws:SecureTransport": "false"}}, {}))

    def test_unknown_operators_raise(self):
        with self.assertRaises(Unsupported):
            conditions_hold({"ForAnyValue:StringLike": {"k": "a"}}, {"k": "a"})
        with self.assertRaises(Unsupported):
            conditions_hold({"DateGreaterThan": {"k": "a"}}, {"k": "a"})

    def test_explicit_deny_wins(self):
        doc = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s:A", "Resource": "*"},
            {"Effect": "Deny", "Action": "s:A", "Resource": "*"},
        ]}
        self.assertEqual(evaluate(doc, Request("s:A", resource="r")), EXPLICIT_DENY)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        rendered = json.load(f)
    # The documents arrive as the exact JSON strings the module outputs.
    DOCS.update({name: json.loads(text) for name, text in rendered.items()})
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
