"""Train Lab's engine: config, data, models, optimizers, trainer, jobs, store, export, CLI.

Plain Python and torch; never imports Streamlit. Data flows
config -> data / models / optim -> trainer -> events -> jobs -> store -> readers.
"""
