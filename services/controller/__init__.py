"""The Kubernetes controller: Dataset and DataLoad resources reconciled with the master."""
