"""The rule engine: runs playbook rules over a capture and produces findings (diagnose.findings)."""
