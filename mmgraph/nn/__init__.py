"""mmgraph.nn"""
