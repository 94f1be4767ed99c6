"""Layer: go, watch, targets and filters, receipts."""
