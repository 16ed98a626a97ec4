"""Start moto's server (python moto_launcher.py -H 127.0.0.1 -p PORT) with two emulator fixes.

moto enforces bucket policies on object requests, but its condition evaluation
(moto.iam.access_control / moto.iam.policy_conditions) knows neither the request context
(aws:SecureTransport, s3:TlsVersion) nor the Bool/Numeric operators: such a condition counts as
matched. A standard TLS-only policy (Deny s3:* when aws:SecureTransport is false) then denies every
request, and the Terraform state cannot live in the bucket terraform/bootstrap creates.

The fix evaluates conditions on exactly those two keys as what every request stands for in
production, HTTPS with TLS 1.3: a statement whose condition does not hold does not apply (as in
AWS), one whose condition holds applies without it. Every other condition is left to moto.
If moto's internals move, the server starts unpatched and says so.

moto (5.2.5) has no logs AssociateKmsKey, which the AWS provider calls when a log group that exists
gets a KMS key (the host's log group did, test_tf_moved_moto.py): the second fix records the key on
the group, as AWS does, and answers for a missing group as AWS does.
"""

from __future__ import annotations

import sys

TLS_CONTEXT = {"aws:securetransport": "true", "s3:tlsversion": "1.3"}

OPERATORS = {
    "Bool": lambda actual, expected: actual.lower() in [e.lower() for e in expected],
    "StringEquals": lambda actual, expected: actual in expected,
    "NumericEquals": lambda actual, expected: any(float(actual) == float(e) for e in expected),
    "NumericLessThan": lambda actual, expected: any(float(actual) < float(e) for e in expected),
    "NumericLessThanEquals": lambda actual, expected: any(float(actual) <= float(e) for e in expected),
    "NumericGreaterThan": lambda actual, expected: any(float(actual) > float(e) for e in expected),
    "NumericGreaterThanEquals": lambda actual, expected: any(float(actual) >= float(e) for e in expected),
}


def conditions_hold(condition: dict) -> bool | None:
    """True/False when every key is a TLS context key and every operator known; else None (moto decides)."""
    verdict = True
    for operator, pairs in condition.items():
        compare = OPERATORS.get(operator)
        for key, expected in pairs.items():
            actual = TLS_CONTEXT.get(key.lower())
            if compare is None or actual is None:
                return None
            expected = [str(e) for e in (expected if isinstance(expected, list) else [expected])]
            verdict = verdict and compare(actual, expected)
    return verdict


def _patch() -> str:
    try:
        from moto.iam import access_control

        statement_cls = access_control.IAMPolicyStatement
        original = statement_cls.is_action_permitted
        neutral = access_control.PermissionResult.NEUTRAL
    except (ImportError, AttributeError) as exc:
        return f"moto_launcher: not patched ({exc}); TLS-only bucket policies deny every request"

    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        condition = self._statement.get("Condition")
        verdict = conditions_hold(condition) if isinstance(condition, dict) else None
        if verdict is False:
            return neutral
        if verdict is True:
            without = statement_cls({k: v for k, v in self._statement.items() if k != "Condition"})
            return original(without, action, resource, principal, incoming_condition_values)
        return original(self, action, resource, principal, incoming_condition_values)

    statement_cls.is_action_permitted = is_action_permitted
    return "moto_launcher: requests evaluated as HTTPS with TLS 1.3 in bucket policy conditions"


def _add_associate_kms_key() -> str:
    try:
        from moto.logs.exceptions import ResourceNotFoundException
        from moto.logs.responses import LogsResponse
    except ImportError as exc:
        return f"moto_launcher: logs AssociateKmsKey not added ({exc})"
    if hasattr(LogsResponse, "associate_kms_key"):
        return "moto_launcher: moto has logs AssociateKmsKey itself"

    def associate_kms_key(self) -> str:
        group = self.logs_backend.groups.get(self._get_param("logGroupName"))
        if group is None:
            raise ResourceNotFoundException()
        group.kms_key_id = self._get_param("kmsKeyId")
        return ""

    LogsResponse.associate_kms_key = associate_kms_key
    return "moto_launcher: logs AssociateKmsKey added"


if __name__ == "__main__":
    print(_patch(), file=sys.stderr, flush=True)
    print(_add_associate_kms_key(), file=sys.stderr, flush=True)
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
