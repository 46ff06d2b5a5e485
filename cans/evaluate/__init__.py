"""Evaluation: scoring a model over a data set (``scores``), the test report behind ``test.py``
(``tester``), metrics, the test protocol and the paper's numbers, result images."""
