"""Watching memory: process RSS against the real limit, the memory guard, the dashboard
data and widget. Reads the memory engine; never imported by it."""
