"""The E2E restaurant task: what its meaning representations say and how texts are checked against them.

- slots.py   slot errors of a text against its MR (missing, contradicted, added), corpus slot error rate
"""
