"""payg: a prepaid pay-as-you-go controller for wall sockets."""
