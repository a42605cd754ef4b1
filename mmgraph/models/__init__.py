"""mmgraph.models"""
