"""The local stack: `dispatch up` starts every process and keeps them up."""
