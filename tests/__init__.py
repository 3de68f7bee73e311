"""The test suite. A package, so that test helpers are plain modules (``tests.training.helpers``)."""
