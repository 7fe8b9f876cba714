"""The publication's calendar at work: what is due now, the scheduler loop, notices."""
